"""Ask a model for a reply of a known shape, with bounded retries, failing closed.

:func:`ask_structured` renders a prompt, calls the backend and hands the reply to ``parse``.
A reply that does not parse (``parse`` raises ``ValueError``, ``KeyError`` or ``TypeError``)
is asked again, with the parse error shown to the model, at most ``retries`` more times;
HTTP errors and timeouts are retried the same way. When every attempt fails the result is
``failed`` with no value: it is never passed on as a success. Every attempt is one
``llm_calls`` row in the :class:`~jobs.llm.client.CallLog`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from jobs.llm.client import CallLog, ChatBackend, ChatReply, ChatRequest, request_hash
from jobs.llm.prompts import Prompt
from schemas import LLMCall, canonical_json

T = TypeVar("T")

PARSE_ERRORS = (ValueError, KeyError, TypeError)


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one call, derived from a caller's seed and what distinguishes the call.

    >>> derive_seed(7, "vote", 0) == derive_seed(7, "vote", 0) != derive_seed(7, "vote", 1)
    True
    >>> 0 <= derive_seed(7) < 2**31
    True
    """
    digest = hashlib.sha256(canonical_json([seed, *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str | None) -> Any:
    """The JSON value in a model reply: the whole text, a fenced block, or the first balanced
    object or array in it. Raises ``ValueError`` when there is none.

    >>> extract_json('Sure! ```json\\n{"a": 1}\\n```')
    {'a': 1}
    >>> extract_json('The answer is {"ok": true} as asked.')
    {'ok': True}
    >>> extract_json("no json here")
    Traceback (most recent call last):
    ...
    ValueError: the reply holds no JSON value: 'no json here'
    """
    if text is None or not text.strip():
        raise ValueError("the reply is empty")
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, index)
                return value
            except ValueError:
                continue
    raise ValueError(f"the reply holds no JSON value: {text[:200]!r}")


def json_object(reply: ChatReply) -> dict[str, Any]:
    """The reply's content as a JSON object, or ``ValueError``."""
    value = extract_json(reply.content)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Structured(Generic[T]):
    """The outcome of :func:`ask_structured`: a parsed value, or a failure with its reason."""

    value: T | None
    status: Literal["ok", "failed"]
    attempts: int
    error: str | None
    prompt_key: str
    calls: tuple[LLMCall, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ask_structured(
    backend: ChatBackend,
    prompt: Prompt,
    variables: Mapping[str, Any],
    parse: Callable[[ChatReply], T],
    retries: int = 2,
    *,
    log: CallLog,
    seed: int = 0,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    conversation: Sequence[Mapping[str, Any]] = (),
    tools: Sequence[Mapping[str, Any]] = (),
) -> Structured[T]:
    """Render ``prompt`` with ``variables``, call ``backend`` and ``parse`` the reply.

    The rendered prompt is the first message (its role from the prompt file), followed by
    ``conversation``. Attempt ``k`` (from 0) uses the seed ``derive_seed(seed, "attempt", k)``
    for ``k > 0`` and ``seed`` itself first; after an unparsable reply the next attempt shows the
    model its reply and the parse error. All attempts share one ``request_hash`` (that of the
    first request), so the log groups them. Rendering errors (a missing variable) are bugs in
    the caller and raise.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    base_messages = (
        {"role": prompt.role, "content": prompt.render(variables)},
        *(dict(m) for m in conversation),
    )
    messages: tuple[Mapping[str, Any], ...] = base_messages
    logical_hash: str | None = None
    calls: list[LLMCall] = []
    error: str | None = None
    for number in range(retries + 1):
        request = ChatRequest(
            messages=messages,
            tools=tuple(tools),
            temperature=temperature,
            seed=seed if number == 0 else derive_seed(seed, "attempt", number),
            max_tokens=max_tokens,
            prompt_name=prompt.name,
            prompt_version=prompt.version,
        )
        if logical_hash is None:
            logical_hash = request_hash(request, backend.model)
        attempt = log.attempt(backend, request)
        if attempt.failure is not None:
            error = f"{attempt.failure.kind}: {attempt.failure}"
            calls.append(
                log.record(
                    backend, request, attempt, number + 1, attempt.failure.kind,
                    str(attempt.failure), logical_hash,
                )
            )  # fmt: skip
            messages = base_messages
            continue
        reply = attempt.reply
        assert reply is not None
        try:
            value = parse(reply)
        except PARSE_ERRORS as exc:
            error = f"parse_error: {exc}"
            calls.append(
                log.record(
                    backend, request, attempt, number + 1, "parse_error", str(exc), logical_hash
                )
            )
            messages = (
                *base_messages,
                {"role": "assistant", "content": reply.content or ""},
                {
                    "role": "user",
                    "content": f"That reply could not be used ({exc}). Answer again, following "
                    "the required format exactly and adding nothing else.",
                },
            )
            continue
        calls.append(log.record(backend, request, attempt, number + 1, "ok", None, logical_hash))
        return Structured(value, "ok", number + 1, None, prompt.key, tuple(calls))
    return Structured(None, "failed", retries + 1, error, prompt.key, tuple(calls))
