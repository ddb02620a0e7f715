"""An external check of environment tooling: BFCL's executable multi-turn backends, converted
to sandbox tools, must reproduce BFCL's own outputs on BFCL's ground-truth call sequences.

``bfcl-eval`` ships each multi-turn API as a Python class holding its state in attributes
(``TicketAPI``, ``TwitterAPI``, ...). :func:`bfcl_tool_code` turns one into our tool form: the
class's module source, then one function per public method that rebuilds the instance from
``STATE`` (the scenario on the first call, the saved attributes afterwards), calls the method
and saves the attributes back: the same shape as our synthesized stateful tools. The code
first goes through the same static checks (:func:`jobs.envs.verify.static_problems`).

:func:`check_bfcl_class` then replays, for every ``multi_turn_base`` entry that involves the
class, the ground-truth calls of that class in order, both in one sandbox session and on a
real instance in this process, and compares each result's canonical JSON. The BFCL data are
evaluation data: this is a check of the converter and the sandbox, and nothing of it is
written to the lake as training environments.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.envs.verify import static_problems
from sandbox import Environment as SandboxEnvironment
from sandbox import Sandbox, Session
from sandbox.calls import parse_call
from schemas import canonical_json

BACKENDS = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
MODULES = {
    "TicketAPI": "ticket_api",
    "TwitterAPI": "posting_api",
    "MessageAPI": "message_api",
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "TravelAPI": "travel_booking",
    "TradingBot": "trading_bot",
    "VehicleControlAPI": "vehicle_control",
}

# STATE is JSON; BFCL's classes key dicts by int (tweet ids), so keys are packed as pairs.
_STATE_CODEC = """

def _astra_pack(value):
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _astra_pack(v) for k, v in value.items()}
        return {"__pairs__": [[_astra_pack(k), _astra_pack(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_astra_pack(v) for v in value]
    return value


def _astra_unpack(value):
    if isinstance(value, dict):
        if set(value) == {"__pairs__"}:
            return {_astra_unpack(k): _astra_unpack(v) for k, v in value["__pairs__"]}
        return {k: _astra_unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_astra_unpack(v) for v in value]
    return value
"""

_WRAPPER = """

def {method}(*args, **kwargs):
    api = {cls}()
    saved = STATE.get("instance")
    if saved is None and hasattr(api, "_load_scenario"):
        api._load_scenario(STATE.get("scenario") or {{}})
    elif saved is not None:
        api.__dict__.update(_astra_unpack(saved))
    result = api.{method}(*args, **kwargs)
    STATE["instance"] = _astra_pack(dict(vars(api)))
    return result
"""


def bfcl_class(name: str) -> type:
    if name not in MODULES:
        raise KeyError(f"no BFCL backend {name!r}; known: {sorted(MODULES)}")
    return getattr(importlib.import_module(f"{BACKENDS}.{MODULES[name]}"), name)


def public_methods(cls: type) -> list[str]:
    return sorted(n for n, v in vars(cls).items() if callable(v) and not n.startswith("_"))


def bfcl_tool_code(name: str) -> str:
    """The class's module source plus one sandbox tool function per public method."""
    cls = bfcl_class(name)
    source = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
    wrappers = "".join(_WRAPPER.format(method=m, cls=name) for m in public_methods(cls))
    return source + _STATE_CODEC + wrappers


def _data_dir() -> Path:
    import bfcl_eval

    return Path(bfcl_eval.__file__).parent / "data"


def ground_truth(name: str, category: str = "multi_turn_base") -> list[tuple[str, dict, list]]:
    """(entry id, the class's initial config, its ground-truth calls in order) per entry."""
    methods = set(public_methods(bfcl_class(name)))
    data = _data_dir()
    questions = [
        json.loads(line) for line in (data / f"BFCL_v4_{category}.json").read_text().splitlines()
    ]
    answers = {
        json.loads(line)["id"]: json.loads(line)["ground_truth"]
        for line in (data / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines()
    }
    out = []
    for question in questions:
        if name not in question["involved_classes"]:
            continue
        calls = [
            call
            for turn in answers.get(question["id"], [])
            for call in turn
            if call.split("(", 1)[0].strip() in methods
        ]
        if calls:
            out.append((question["id"], question["initial_config"].get(name, {}), calls))
    return out


@dataclass
class BFCLCheck:
    """What replaying one BFCL class's ground truth in the sandbox gave."""

    name: str
    bfcl_version: str
    static_problems: list[str] = field(default_factory=list)
    entries: int = 0
    calls: int = 0
    matched: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.static_problems and self.calls > 0 and self.matched == self.calls


def _reference(instance: Any, text: str) -> str:
    call = parse_call(text)
    try:
        value = getattr(instance, call.name)(*call.args, **call.kwargs)
    except Exception as exc:  # BFCL's backends raise on some bad arguments; so may ours
        return f"raised {type(exc).__name__}"
    return canonical_json(json.loads(json.dumps(value, default=str)))


def check_bfcl_class(sandbox: Sandbox, name: str, limit: int | None = None) -> BFCLCheck:
    """Replay every ground-truth call sequence of ``name`` in the sandbox and natively."""
    check = BFCLCheck(name=name, bfcl_version=metadata.version("bfcl-eval"))
    code = bfcl_tool_code(name)
    check.static_problems = static_problems(code)
    if check.static_problems:
        return check
    cls = bfcl_class(name)
    for entry_id, config, calls in ground_truth(name)[:limit]:
        check.entries += 1
        instance = cls()
        if hasattr(instance, "_load_scenario"):
            instance._load_scenario(copy.deepcopy(config))
        session = Session(
            sandbox, SandboxEnvironment(code=code, initial_state={"scenario": config})
        )
        for text in calls:
            want = _reference(instance, text)
            result = session.call(text)
            got = canonical_json(result.value) if result.ok else f"raised {result.error_type}"
            check.calls += 1
            if got == want:
                check.matched += 1
            else:
                check.mismatches.append(
                    {"entry": entry_id, "call": text, "bfcl": want, "ours": got}
                )
    return check
