"""The multi-turn agent loop (OpenAI tools message format) and the tool executors.

:func:`run_agent` starts from a system and a user message and asks the synthesizer for one
assistant message per turn; every tool call in it is executed and answered by a ``tool``
message. It stops at the first assistant message without tool calls (status ``completed``) or
after ``max_turns`` assistant messages (status ``turn_limit``); an agent reply that is not an
assistant message ends it with status ``error``.

Executors (one per trajectory, recorded in ``Trajectory.executor``):

- :class:`SandboxExecutor`: runs a tool's Python code in :class:`sandbox.Sandbox`
  (``call_function(code, name, args)``), one fresh stateless call per tool call.
- :class:`OfflineSimulator`: a schema-conformant, deterministic result built from the tool's
  ``output_schema``; ids are hashes of the call, so a later call consumes the id an earlier
  one returned; the same call always gives the same result; fields of earlier calls and
  results that share an id with this call are reused (a booking looked up returns the flight
  it was booked on).
- :class:`LLMSimulator`: asks ``synthesizer.simulate_tool`` with the last few messages.

Injected failures (rate ``failure_rate``, decided per call from the seed) replace the tool's
result with an error payload ``{"error": {"type": "ToolUnavailable", ...}}``; every failed
call, injected or not, answers with a JSON object holding an ``error`` key.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from jobs.synth.chains import is_id_param, required_params
from jobs.synth.interface import Synthesizer, ToolOutcome
from jobs.synth.tasks import sample_value, stable_seed
from sandbox import Sandbox
from schemas import Message, Task, Tool, ToolCall, Trajectory, canonical_json

ExecutorKind = Literal["sandbox", "llm_simulator", "offline_simulator"]

SYSTEM_PROMPT = (
    "You are a helpful assistant that solves the user's request with the tools provided. "
    "Call tools when you need information or need to act; when the request is done, reply "
    "with a short final answer and no tool call."
)


class Executor(Protocol):
    """Runs (or simulates) one tool call."""

    @property
    def kind(self) -> ExecutorKind: ...

    def execute(
        self, tool: Tool, arguments: str, history: Sequence[Message], seed: int
    ) -> ToolOutcome: ...


def error_outcome(kind: str, message: str) -> ToolOutcome:
    """A failed call: the agent sees ``{"error": {"type": ..., "message": ...}}``.

    >>> error_outcome("InvalidArguments", "bad").content
    '{"error":{"message":"bad","type":"InvalidArguments"}}'
    """
    payload = {"error": {"type": kind, "message": message}}
    return ToolOutcome(ok=False, content=canonical_json(payload), error=f"{kind}: {message}")


def is_error_content(content: str | None) -> bool:
    """Whether a tool message's content is an error payload (a JSON object with ``error``).

    >>> is_error_content('{"error": {"type": "X"}}'), is_error_content('{"id": 1}')
    (True, False)
    """
    if not content:
        return True
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return isinstance(value, dict) and "error" in value


def parse_arguments(tool: Tool, arguments: str) -> dict[str, Any] | ToolOutcome:
    """The call's arguments as a dict, or an error outcome (bad JSON, missing required)."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError as exc:
        return error_outcome("InvalidArguments", f"arguments are not JSON: {exc}")
    if not isinstance(args, dict):
        return error_outcome("InvalidArguments", "arguments must be a JSON object")
    missing = [p for p in required_params(tool) if p not in args]
    if missing:
        return error_outcome("InvalidArguments", f"missing required parameters {missing}")
    return args


class SandboxExecutor:
    """Runs tools that have Python code (tool name -> code) in the Wasmtime sandbox.

    The tool's function is called by name with the JSON arguments as keyword arguments; the
    returned value (JSON) is the result. A tool without code, arguments that do not parse, or
    a call that fails in the sandbox gives an error payload.
    """

    def __init__(self, code_by_tool: Mapping[str, str], sandbox: Sandbox | None = None) -> None:
        self.code_by_tool = dict(code_by_tool)
        self.sandbox = sandbox if sandbox is not None else Sandbox()

    @property
    def kind(self) -> ExecutorKind:
        return "sandbox"

    def execute(
        self, tool: Tool, arguments: str, history: Sequence[Message], seed: int
    ) -> ToolOutcome:
        code = self.code_by_tool.get(tool.name)
        if code is None:
            return error_outcome("NoCode", f"tool {tool.name} has no code to run")
        args = parse_arguments(tool, arguments)
        if isinstance(args, ToolOutcome):
            return args
        result = self.sandbox.call_function(code, tool.name, args, seed=seed)
        if not result.ok:
            return error_outcome(result.error_type or "ToolError", result.error_message or "")
        return ToolOutcome(ok=True, content=result.value_json or "null")


class LLMSimulator:
    """Simulated results from ``synthesizer.simulate_tool``, given the last few messages."""

    def __init__(self, synthesizer: Synthesizer, history_window: int = 6) -> None:
        self.synthesizer = synthesizer
        self.history_window = history_window

    @property
    def kind(self) -> ExecutorKind:
        return "llm_simulator"

    def execute(
        self, tool: Tool, arguments: str, history: Sequence[Message], seed: int
    ) -> ToolOutcome:
        recent = list(history[-self.history_window :]) if self.history_window else []
        return self.synthesizer.simulate_tool(tool, arguments, recent, seed)


def _id_prefix(name: str) -> str:
    stem = re.sub(r"_?(id|ids|uuid)$", "", name, flags=re.IGNORECASE) or name
    letters = "".join(part[0] for part in stem.split("_") if part) if "_" in stem else stem[:3]
    return letters.upper()[:4] or "ID"


def _related_fields(args: Mapping[str, Any], history: Sequence[Message]) -> dict[str, Any]:
    """Scalar fields of earlier calls and results that share an id value with ``args``."""
    ids = {(k, v) for k, v in args.items() if isinstance(v, str) and is_id_param(k, {})}
    if not ids:
        return {}
    calls: dict[str, dict[str, Any]] = {}
    for message in history:
        for call in message.tool_calls:
            try:
                value = json.loads(call.arguments)
            except ValueError:
                continue
            if isinstance(value, dict):
                calls[call.id] = value
    related: dict[str, Any] = {}
    for message in history:
        if message.role != "tool" or is_error_content(message.content):
            continue
        try:
            output = json.loads(message.content or "")
        except ValueError:
            continue
        if not isinstance(output, dict):
            continue
        record = {**calls.get(message.tool_call_id or "", {}), **output}
        scalars = {k: v for k, v in record.items() if not isinstance(v, dict | list)}
        if ids & {(k, v) for k, v in scalars.items() if isinstance(v, str)}:
            related.update(scalars)
    return related


class OfflineSimulator:
    """Deterministic, schema-conformant results from the tool's ``output_schema``.

    Rules, for each field of the output schema (arrays get two items, objects recurse):
    a field named like an argument echoes the argument; a top-level field known from a related
    earlier call or result (sharing an id value) repeats it; an id field is
    ``PREFIX-<hash of tool, arguments, path>``; other fields get a typed value from the same
    pools as task values, seeded by the call. Nothing depends on ``seed`` or on unrelated
    history, so the same call returns the same result. A tool without an output schema is
    simulated from ``inferred`` (its id -> the schema its graph edges say it produces, see
    :func:`jobs.synth.chains.simulation_schemas`); with neither, the result is
    ``{"status": "ok"}`` plus the arguments.
    """

    def __init__(
        self, salt: str = "offline-sim@1", inferred: Mapping[str, dict[str, Any]] | None = None
    ) -> None:
        self.salt = salt
        self.inferred = dict(inferred or {})

    @property
    def kind(self) -> ExecutorKind:
        return "offline_simulator"

    def execute(
        self, tool: Tool, arguments: str, history: Sequence[Message], seed: int
    ) -> ToolOutcome:
        args = parse_arguments(tool, arguments)
        if isinstance(args, ToolOutcome):
            return args
        key = canonical_json(args)
        schema = tool.output_schema or self.inferred.get(tool.id)
        if not schema:
            return ToolOutcome(ok=True, content=canonical_json({"status": "ok", **args}))
        related = _related_fields(args, history)
        value = self._value(tool, key, schema, "", args, related, top=True)
        return ToolOutcome(ok=True, content=canonical_json(value))

    def _value(
        self,
        tool: Tool,
        key: str,
        schema: Mapping[str, Any],
        path: str,
        args: Mapping[str, Any],
        related: Mapping[str, Any],
        *,
        top: bool = False,
    ) -> Any:
        name = path.rsplit(".", 1)[-1].split("[", 1)[0]
        rng = random.Random(stable_seed(self.salt, tool.name, key, path))
        kind = schema.get("type")
        if kind == "object" or (kind is None and "properties" in schema):
            return {
                field: self._value(
                    tool, key, sub, f"{path}.{field}" if path else field, args, related, top=top
                )
                for field, sub in (schema.get("properties") or {}).items()
            }
        if kind == "array":
            items = schema.get("items") or {"type": "string"}
            return [self._value(tool, key, items, f"{path}[{i}]", args, related) for i in range(2)]
        if top and name in args and "[" not in path:
            return args[name]
        if top and name in related and "[" not in path and not isinstance(related[name], bool):
            return related[name]
        if schema.get("enum"):
            return rng.choice(list(schema["enum"]))
        if kind == "string" and is_id_param(name, schema):
            digest = stable_seed(self.salt, tool.name, key, path)
            return f"{_id_prefix(name)}-{digest:016x}"[:21]
        if kind == "string" and (name.endswith(("_at", "_time")) or name == "time"):
            moment = dt.datetime(2025, 6, 1, 8, 0) + dt.timedelta(minutes=rng.randrange(260000))
            return moment.isoformat()
        if kind == "string" and name.endswith("url"):
            return f"https://example.com/{name}/{stable_seed(key, path) % 10**8}"
        if kind == "integer":
            if "minute" in name:
                return rng.randint(30, 600)
            if "percent" in name or "probability" in name:
                return rng.randint(0, 100)
            return rng.randint(0, 9)
        return sample_value(name, schema, rng)


def _injected(seed: int, call_index: int, rate: float) -> bool:
    if rate <= 0:
        return False
    return random.Random(stable_seed("inject", seed, call_index)).random() < rate


def run_agent(
    task: Task,
    tools: Sequence[Tool],
    synthesizer: Synthesizer,
    executor: Executor,
    *,
    max_turns: int = 20,
    failure_rate: float = 0.0,
    seed: int,
    system_prompt: str = SYSTEM_PROMPT,
    run_id: str | None = None,
) -> Trajectory:
    """Run the agent on ``task`` with ``tools`` until it answers or hits ``max_turns``."""
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}")
    by_name = {t.name: t for t in tools}
    messages = [
        Message(role="system", content=system_prompt),
        Message(role="user", content=task.query),
    ]
    n_turns = 0
    n_calls = 0
    status: Literal["completed", "turn_limit", "error"] = "turn_limit"
    final_answer: str | None = None
    while n_turns < max_turns:
        reply = synthesizer.agent_step(list(messages), list(tools), stable_seed(seed, n_turns))
        n_turns += 1
        if reply.role != "assistant":
            status = "error"
            break
        messages.append(reply)
        if not reply.tool_calls:
            status = "completed"
            final_answer = reply.content
            break
        for call in reply.tool_calls:
            outcome = _execute(call, by_name, executor, messages, seed, n_calls, failure_rate)
            n_calls += 1
            messages.append(
                Message(role="tool", content=outcome.content, tool_call_id=call.id, name=call.name)
            )
    return Trajectory(
        task_id=task.id,
        tool_ids=[t.id for t in tools],
        messages=messages,
        agent_model=synthesizer.name,
        executor=executor.kind,
        seed=seed,
        n_turns=n_turns,
        n_tool_calls=n_calls,
        status=status,
        final_answer=final_answer,
        run_id=run_id,
        parent_ids=[task.id],
    )


def _execute(
    call: ToolCall,
    by_name: Mapping[str, Tool],
    executor: Executor,
    history: Sequence[Message],
    seed: int,
    call_index: int,
    failure_rate: float,
) -> ToolOutcome:
    tool = by_name.get(call.name)
    if tool is None:
        return error_outcome("UnknownTool", f"no tool named {call.name!r}")
    if _injected(seed, call_index, failure_rate):
        return error_outcome("ToolUnavailable", "the service is temporarily unavailable")
    return executor.execute(tool, call.arguments, history, stable_seed(seed, "call", call_index))


def offered_tools(
    chain_tool_ids: Sequence[str],
    tools: Sequence[Tool],
    edges: Sequence[Any],
    limit: int,
    seed: int,
) -> list[Tool]:
    """The tools an agent is offered for one task, sorted by name (their order must not hint
    at the plan): the chain's tools, then their graph neighbours by edge weight, then others
    drawn by ``seed``, up to ``limit`` in all (never fewer than the chain's). ``0`` offers
    every tool of the server: the largest APIs have thousands, more than any prompt holds.

    >>> from schemas import Tool
    >>> ts = [Tool(server_id="s", name=n, description=n, domain="d", source_format="mcp",
    ...            parameters={"type": "object"}) for n in "abcdef"]
    >>> [t.name for t in offered_tools([ts[4].id], ts, [], limit=3, seed=1)][:3].count("e")
    1
    >>> len(offered_tools([ts[0].id], ts, [], limit=0, seed=1))
    6
    """
    by_id = {t.id: t for t in tools}
    if limit <= 0 or len(tools) <= limit:
        return sorted(tools, key=lambda t: (t.name, t.id))
    chosen = [i for i in dict.fromkeys(chain_tool_ids) if i in by_id]
    wanted = set(chosen)
    neighbours = sorted(
        (
            (-float(e.weight), other)
            for e in edges
            for near, other in (
                (e.source_tool_id, e.target_tool_id),
                (e.target_tool_id, e.source_tool_id),
            )
            if near in wanted and other in by_id and other not in wanted
        ),
    )
    for _, other in neighbours:
        if len(chosen) >= limit:
            break
        if other not in chosen:
            chosen.append(other)
    rest = sorted(i for i in by_id if i not in set(chosen))
    random.Random(seed).shuffle(rest)
    chosen.extend(rest[: max(0, limit - len(chosen))])
    return sorted((by_id[i] for i in chosen), key=lambda t: (t.name, t.id))
