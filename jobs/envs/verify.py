"""Verification of synthesized tools: by reading the code, then by running it in the sandbox.

ASTRA's release accepts tool code when the answer string appears anywhere in stdout after one
run. Ours rejects, each with its reason:

- **static** (:func:`static_problems`): code that does not parse, imports the clock
  (``time``, ``datetime``, ``calendar``), randomness (``random``, ``secrets``, ``uuid``), the
  network or files (``socket``, ``urllib``, ``http``, ``os``, ``io``, ``pathlib``, ...), or
  calls ``open``/``eval``/``exec``/``compile``/``__import__``. The sandbox would make most of
  these deterministic or fail them; a tool that tries is still not a faithful mock.
- **answer** (:func:`verify_replay`): replaying the trace's calls in order in one session,
  each call returns a value whose canonical JSON holds the normalised answer.
- **determinism**: a second replay under another session seed gives identical outputs call
  by call and the same final state digest.
- **perturbation**: a lookup called with one key argument changed does not return its answer.
- **echo**: a call whose arguments carry a fresh probe value does not return that value.
- **state**: a call that needs a record an earlier call creates fails in a fresh session.
- **names**: tool names are unique within an environment.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.envs.codegen import python_name
from sandbox import Environment as SandboxEnvironment
from sandbox import Sandbox, Session
from schemas.answers import holds_answer

FORBIDDEN_MODULES = {
    "time": "reads the clock",
    "datetime": "reads the clock",
    "calendar": "reads the clock",
    "random": "uses randomness",
    "secrets": "uses randomness",
    "uuid": "uses randomness",
    "socket": "uses the network",
    "urllib": "uses the network",
    "http": "uses the network",
    "requests": "uses the network",
    "ssl": "uses the network",
    "os": "touches files or the process",
    "io": "touches files or the process",
    "pathlib": "touches files or the process",
    "shutil": "touches files or the process",
    "subprocess": "touches files or the process",
    "sys": "touches files or the process",
    "tempfile": "touches files or the process",
}
FORBIDDEN_CALLS = {
    "open": "touches files or the process",
    "eval": "runs generated code",
    "exec": "runs generated code",
    "compile": "runs generated code",
    "__import__": "imports dynamically",
}
PROBE = "zq-probe-7f3a"


def static_problems(code: str) -> list[str]:
    """Why the code may not be a tool (empty when it may).

    >>> static_problems("import random\\ndef f():\\n    return random.random()")
    ['line 1: imports random (uses randomness)']
    >>> static_problems("from datetime import datetime as d\\ndef f():\\n    return 1")
    ['line 1: imports datetime (reads the clock)']
    >>> static_problems("def f(p):\\n    return open(p).read()")
    ['line 2: calls open (touches files or the process)']
    >>> static_problems("def f(:")[0].startswith("does not parse")
    True
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"does not parse: {exc.msg} (line {exc.lineno})"]
    problems = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        for module in modules:
            root = module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                problems.append(f"line {node.lineno}: imports {root} ({FORBIDDEN_MODULES[root]})")
        called = (
            node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else ""
        )
        if called in FORBIDDEN_CALLS:
            problems.append(f"line {node.lineno}: calls {called} ({FORBIDDEN_CALLS[called]})")
    return problems


@dataclass(frozen=True)
class GoldCall:
    """One recorded call of a trace: the tool, its arguments, the answer it must return,
    and the id of the sub-question (``qa_id#sid``) it stands for."""

    member: str
    tool_name: str
    arguments: dict[str, Any]
    answer: str
    key_arguments: tuple[str, ...] = ()
    needs_state: bool = False


@dataclass
class Verification:
    """The outcome of verifying one environment: which members failed, and why."""

    failures: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    state_digest: str = ""
    runtime_digest: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.problems

    def fail(self, member: str, reason: str) -> None:
        self.failures.setdefault(member, []).append(reason)


def _is_error(value: Any) -> bool:
    return isinstance(value, dict) and "error" in value


def _perturbed(arguments: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = arguments[name]
    if isinstance(value, bool):
        changed: Any = not value
    elif isinstance(value, int | float):
        changed = value + 1
    else:
        changed = f"{value}-other"
    return {**arguments, name: changed}


def _replay(
    sandbox: Sandbox, code: str, state: Mapping[str, Any], calls: Sequence[GoldCall], seed: int
) -> tuple[list[Any], list[str], str]:
    session = Session(sandbox, SandboxEnvironment(code=code, initial_state=dict(state)), seed=seed)
    values, outputs = [], []
    for call in calls:
        result = session.call_function(python_name(call.tool_name), call.arguments)
        values.append(result.value if result.ok else {"error": result.error_message})
        # The result digest covers the seed too; what must not change is the output.
        outputs.append(result.value_json or f"{result.error_type}: {result.error_message}")
    return values, outputs, session.state_digest


def verify_replay(
    sandbox: Sandbox,
    code: str,
    initial_state: Mapping[str, Any],
    calls: Sequence[GoldCall],
    tool_names: Sequence[str],
) -> Verification:
    """Every runtime check of the module docstring on one environment's code and calls."""
    check = Verification(runtime_digest=sandbox.runtime_digest)
    names = [python_name(n) for n in tool_names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        check.problems.append(f"tool names not unique: {repeated}")
    problems = static_problems(code)
    if problems:
        check.problems.extend(problems)
        return check
    values, outputs, state_digest = _replay(sandbox, code, initial_state, calls, seed=0)
    _, outputs_again, state_again = _replay(sandbox, code, initial_state, calls, seed=1)
    check.outputs, check.state_digest = outputs, state_digest
    for call, value, first, second in zip(calls, values, outputs, outputs_again, strict=True):
        if _is_error(value) or not holds_answer(value, call.answer):
            check.fail(call.member, f"answer {call.answer!r} not in the returned value")
        if first != second:
            check.fail(call.member, "nondeterministic: another seed gave another result")
    if state_digest != state_again and not check.failures:
        check.problems.append("nondeterministic: another seed gave another final state")
    for call in calls:
        fresh = Session(sandbox, SandboxEnvironment(code=code, initial_state=dict(initial_state)))
        fn = python_name(call.tool_name)
        if call.needs_state:
            alone = fresh.call_function(fn, call.arguments)
            if alone.ok and holds_answer(alone.value, call.answer):
                check.fail(call.member, "answers without the record an earlier call creates")
            continue
        for name in call.key_arguments:
            moved = fresh.call_function(fn, _perturbed(call.arguments, name))
            if moved.ok and not _is_error(moved.value) and holds_answer(moved.value, call.answer):
                check.fail(call.member, f"returns the same answer with {name} changed")
                break
        if call.key_arguments:
            probe = {**call.arguments, call.key_arguments[0]: PROBE}
            echoed = fresh.call_function(fn, probe)
            if echoed.ok and PROBE in json.dumps(echoed.value):
                check.fail(call.member, "echoes its arguments")
    return check
