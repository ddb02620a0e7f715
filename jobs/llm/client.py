"""Chat-completion backends and the call log.

``ChatBackend.complete`` sends one chat request (OpenAI message format, optional tools) and
returns a :class:`ChatReply`, or raises :class:`BackendError` with the failure's kind
(``http_error``, ``timeout``, ``backend_error``). Two implementations:

- :class:`OpenAICompatibleBackend`: any server speaking ``POST /v1/chat/completions`` (``vllm
  serve``, OpenAI, llama.cpp's server...), over the standard library's HTTP client. The API
  key is passed in; the CLI reads it from the environment variable named in the config.
- :class:`VLLMOfflineBackend`: vLLM's in-process engine (``LLM.chat``) on a GPU machine; needs
  the ``gpu`` extra.

:class:`CallLog` is the sink for :class:`schemas.LLMCall` rows: one per attempt, with the
prompt's name and version, a hash of the request, tokens, latency, status and error. The job
that owns the log writes it to the lake's ``llm_calls`` table.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import pyarrow as pa

from schemas import LLMCall, Message, ToolCall, canonical_json

CallStatus = Literal["ok", "parse_error", "http_error", "timeout", "backend_error"]
FailureKind = Literal["http_error", "timeout", "backend_error"]


class BackendError(Exception):
    """A call that produced no usable reply; ``kind`` is the ``llm_calls.status`` it records."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


class BackendUnavailable(RuntimeError):
    """A backend that cannot be constructed on this machine (a missing optional package)."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request, plus the prompt it was rendered from (for the log)."""

    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    prompt_name: str = "adhoc"
    prompt_version: str = "0"

    def payload(self, model: str) -> dict[str, Any]:
        """The JSON body of ``POST /v1/chat/completions``.

        >>> ChatRequest(({"role": "user", "content": "hi"},), seed=3).payload("m")["seed"]
        3
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in self.messages],
            "temperature": self.temperature,
        }
        if self.tools:
            body["tools"] = [dict(t) for t in self.tools]
        if self.seed is not None:
            body["seed"] = self.seed
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body


def request_hash(request: ChatRequest, model: str) -> str:
    """A stable digest of what was asked (model, messages, tools, sampling settings).

    >>> r = ChatRequest(({"role": "user", "content": "hi"},))
    >>> request_hash(r, "m") == request_hash(r, "m") != request_hash(r, "other")
    True
    """
    return hashlib.sha256(canonical_json(request.payload(model)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ChatReply:
    """The first choice of a chat completion, with token usage when the backend reports it."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    def to_message(self) -> Message:
        """The reply as an assistant :class:`schemas.Message`."""
        return Message(role="assistant", content=self.content, tool_calls=list(self.tool_calls))


class ChatBackend(Protocol):
    """Anything that answers chat-completion requests."""

    @property
    def kind(self) -> str:
        """Which implementation this is (``openai``, ``vllm``), recorded as ``backend``."""
        ...

    @property
    def model(self) -> str:
        """The model name, recorded on every call and every row produced."""
        ...

    def complete(self, request: ChatRequest) -> ChatReply:
        """One completion; raises :class:`BackendError` when no reply could be had."""
        ...


def message_to_openai(message: Message) -> dict[str, Any]:
    """A :class:`schemas.Message` as an OpenAI chat message dict.

    >>> m = Message(role="assistant", tool_calls=[ToolCall(id="c1", name="f", arguments="{}")])
    >>> message_to_openai(m)["tool_calls"][0]["function"]
    {'name': 'f', 'arguments': '{}'}
    """
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role == "tool":
        out["name"] = message.name
    return out


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return canonical_json(arguments if arguments is not None else {})


def parse_tool_calls(raw: Any, id_prefix: str = "call") -> tuple[ToolCall, ...]:
    """OpenAI ``tool_calls`` entries as :class:`schemas.ToolCall` (ids filled in when absent).

    >>> parse_tool_calls([{"function": {"name": "f", "arguments": {"x": 1}}}])
    (ToolCall(id='call_0', name='f', arguments='{"x":1}'),)
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BackendError("backend_error", f"tool_calls is not a list: {raw!r:.120}")
    calls = []
    for index, entry in enumerate(raw):
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BackendError("backend_error", f"malformed tool call: {entry!r:.120}")
        call_id = entry.get("id") or f"{id_prefix}_{index}"
        calls.append(
            ToolCall(
                id=str(call_id),
                name=function["name"],
                arguments=_arguments_text(function.get("arguments")),
            )
        )
    return tuple(calls)


def parse_completion(body: Any) -> ChatReply:
    """The first choice of an OpenAI chat-completion response body.

    >>> parse_completion({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
    ...                   "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).content
    'hi'
    """
    if not isinstance(body, dict):
        raise BackendError("backend_error", f"response is not a JSON object: {body!r:.120}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendError("backend_error", f"response has no choices: {body!r:.200}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise BackendError("backend_error", f"choice has no message: {choices[0]!r:.200}")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise BackendError("backend_error", f"message content is not text: {content!r:.120}")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return ChatReply(
        content=content,
        tool_calls=parse_tool_calls(message.get("tool_calls")),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choices[0].get("finish_reason"),
    )


def chat_completions_url(base_url: str) -> str:
    """The endpoint for a base URL given with or without its ``/v1`` suffix.

    >>> chat_completions_url("http://127.0.0.1:8000")
    'http://127.0.0.1:8000/v1/chat/completions'
    >>> chat_completions_url("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000/v1/chat/completions'
    """
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class OpenAICompatibleBackend:
    """A chat model behind an OpenAI-compatible HTTP server (e.g. ``vllm serve MODEL``)."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 60.0
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.url = chat_completions_url(base_url)
        self._model = model
        self._api_key = api_key
        self.timeout_s = timeout_s

    @property
    def kind(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    def complete(self, request: ChatRequest) -> ChatReply:
        data = json.dumps(request.payload(self._model)).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise BackendError("http_error", f"HTTP {exc.code} from {self.url}: {detail}") from exc
        except TimeoutError as exc:
            raise BackendError("timeout", f"no reply from {self.url} in {self.timeout_s}s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise BackendError(
                    "timeout", f"no reply from {self.url} in {self.timeout_s}s"
                ) from exc
            raise BackendError("http_error", f"cannot reach {self.url}: {exc.reason}") from exc
        except OSError as exc:
            raise BackendError("http_error", f"connection to {self.url} failed: {exc}") from exc
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BackendError(
                "backend_error", f"response is not JSON: {raw[:200].decode('utf-8', 'replace')}"
            ) from exc
        return parse_completion(body)


_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_hermes_tool_calls(text: str, id_prefix: str = "call") -> ChatReply:
    """Split raw model text in the Hermes/Qwen style (``<tool_call>{json}</tool_call>``) into
    content and tool calls, as vLLM's server does for those chat templates.

    >>> text = 'ok <tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    >>> r = parse_hermes_tool_calls(text)
    >>> r.content, r.tool_calls[0].name, r.tool_calls[0].arguments
    ('ok', 'f', '{"a":1}')
    """
    calls = []
    for index, block in enumerate(_HERMES_CALL.findall(text)):
        try:
            parsed = json.loads(block)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
            # Keep the malformed call visible to judges rather than dropping it.
            calls.append(ToolCall(id=f"{id_prefix}_{index}", name="", arguments=block))
            continue
        calls.append(
            ToolCall(
                id=f"{id_prefix}_{index}",
                name=parsed["name"],
                arguments=_arguments_text(parsed.get("arguments")),
            )
        )
    content = _HERMES_CALL.sub("", text).strip() if calls else text
    return ChatReply(content=content or None, tool_calls=tuple(calls))


class VLLMOfflineBackend:
    """vLLM's in-process engine (``vllm.LLM.chat``) on a GPU machine.

    The engine is built once, in the constructor (``engine_args`` go to ``vllm.LLM``, e.g.
    ``tensor_parallel_size`` or ``max_model_len``). Tool calls are read from the generated text
    in the Hermes/Qwen ``<tool_call>`` format that Qwen-family chat templates produce.
    """

    def __init__(self, model: str, *, engine_args: Mapping[str, Any] | None = None) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise BackendUnavailable(
                "the vllm backend needs the vllm package, which is CUDA-only: on a GPU machine "
                "run `pip install -e '.[gpu]'`, or use backend 'openai' against a `vllm serve` "
                f"server ({exc})"
            ) from exc
        self._sampling_params = SamplingParams
        self._llm = LLM(model=model, **dict(engine_args or {}))
        self._model = model

    @property
    def kind(self) -> str:
        return "vllm"

    @property
    def model(self) -> str:
        return self._model

    def complete(self, request: ChatRequest) -> ChatReply:
        params = self._sampling_params(
            temperature=request.temperature,
            seed=request.seed,
            max_tokens=request.max_tokens if request.max_tokens is not None else 1024,
        )
        try:
            outputs = self._llm.chat(
                [dict(m) for m in request.messages],
                sampling_params=params,
                use_tqdm=False,
                tools=[dict(t) for t in request.tools] or None,
            )
        except Exception as exc:  # the engine's own errors: record, never crash the job
            raise BackendError("backend_error", f"vllm engine failed: {exc}") from exc
        result = outputs[0]
        completion = result.outputs[0]
        reply = parse_hermes_tool_calls(completion.text)
        return ChatReply(
            content=reply.content,
            tool_calls=reply.tool_calls,
            prompt_tokens=len(result.prompt_token_ids or ()),
            completion_tokens=len(completion.token_ids),
            finish_reason=completion.finish_reason,
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Attempt:
    """What one timed call gave: a reply or the failure, with its start time and latency."""

    reply: ChatReply | None
    failure: BackendError | None
    started_at: datetime
    latency_s: float


@dataclass
class CallLog:
    """The in-memory sink of :class:`schemas.LLMCall` rows; a job writes ``to_arrow()``."""

    run_id: str | None = None
    rows: list[LLMCall] = field(default_factory=list)
    clock: Callable[[], datetime] = _utc_now

    def attempt(self, backend: ChatBackend, request: ChatRequest) -> Attempt:
        """Call ``backend`` once and time it; a :class:`BackendError` is returned, not raised."""
        started_at = self.clock()
        start = time.perf_counter()
        try:
            reply = backend.complete(request)
            failure = None
        except BackendError as exc:
            reply, failure = None, exc
        return Attempt(reply, failure, started_at, time.perf_counter() - start)

    def record(
        self,
        backend: ChatBackend,
        request: ChatRequest,
        attempt: Attempt,
        number: int,
        status: CallStatus,
        error: str | None = None,
        logical_hash: str | None = None,
    ) -> LLMCall:
        """Append the row of one attempt (``number`` counts from 1) and return it."""
        reply = attempt.reply
        row = LLMCall(
            backend=backend.kind,
            model=backend.model,
            prompt_name=request.prompt_name,
            prompt_version=request.prompt_version,
            request_hash=logical_hash or request_hash(request, backend.model),
            attempt=number,
            # ISO text: Row.compute_id hashes raw values and cannot serialise a datetime;
            # pydantic turns the text back into the datetime field.
            started_at=attempt.started_at.isoformat(),  # type: ignore[arg-type]
            status=status,
            prompt_tokens=reply.prompt_tokens if reply else None,
            completion_tokens=reply.completion_tokens if reply else None,
            latency_s=attempt.latency_s,
            error=error,
            run_id=self.run_id,
        )
        self.rows.append(row)
        return row

    def complete(self, backend: ChatBackend, request: ChatRequest) -> ChatReply:
        """One logged call without parsing; raises the :class:`BackendError` after logging it."""
        attempt = self.attempt(backend, request)
        if attempt.failure is not None:
            self.record(backend, request, attempt, 1, attempt.failure.kind, str(attempt.failure))
            raise attempt.failure
        self.record(backend, request, attempt, 1, "ok")
        assert attempt.reply is not None
        return attempt.reply

    def to_arrow(self) -> pa.Table:
        """The rows as an Arrow table shaped like ``llm_calls``."""
        return LLMCall.to_arrow(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LLMCall]:
        return iter(self.rows)


def openai_messages(messages: Sequence[Message]) -> tuple[dict[str, Any], ...]:
    """A conversation of :class:`schemas.Message` in the OpenAI format."""
    return tuple(message_to_openai(m) for m in messages)
