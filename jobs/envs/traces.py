"""QA traces derived from recorded tool use, and the rule checks every trace must pass.

The offline source turns a completed trajectory into ASTRA's decomposition: each successful
tool call becomes a sub-question whose answer is one value the call returned; a call that
uses a value an earlier call returned depends on that earlier sub-question. The main
question is the task's query, its answer the last sub-question's answer. Because the answers
come from calls, every sub-question needs a tool and carries its call statement, which tool
synthesis turns into mock-data code that must return the same answer when executed.

Rule checks (:func:`structure_checks`) hold for traces from any source, LLM-written ones
included: ids are unique and every dependency names one; the dependencies form a DAG; hop
levels agree with them (1 without dependencies, else 1 + the deepest dependency); every
sub-question that another depends on needs a tool (its answer must be computable, not
assumed); every tool-needing sub-question has a call to synthesize from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from schemas import Message, QATrace, Task, Tool, Trajectory, canonical_json
from schemas.answers import Scalar, leaves, normalise
from schemas.qa import QACheck, Scenario, SubQuestion

ID_NAME = re.compile(r"(^id$|_id$|Id$|_ref$|_code$|_number$)")


def last_key(path: str) -> str:
    return re.split(r"[.\[]", path)[-1].rstrip("]")


def pick_answer(result: Any, arguments: Mapping[str, Any]) -> tuple[str, Scalar] | None:
    """The value a sub-question asks for: a returned id the call was not given, else the
    first returned scalar that is not one of the arguments (None if there is none).

    >>> pick_answer({"flights": [{"flight_id": "AF1", "price": 90}]}, {"origin": "CDG"})
    ('flights[0].flight_id', 'AF1')
    >>> pick_answer({"flight_id": "AF1", "status": "confirmed"}, {"flight_id": "AF1"})
    ('status', 'confirmed')
    """
    given = {normalise(v) for v in arguments.values() if not isinstance(v, dict | list)}
    candidates = [(p, v) for p, v in leaves(result) if normalise(v) not in given]
    for path, value in candidates:
        if ID_NAME.search(last_key(path)) and isinstance(value, str):
            return path, value
    return candidates[0] if candidates else None


def _words(path: str) -> str:
    return last_key(path).replace("_", " ")


def _call_text(arguments: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    parts = []
    for name, value in arguments.items():
        shown = f"the one from {sources[name]}" if name in sources else json.dumps(value)
        parts.append(f"{name.replace('_', ' ')} {shown}")
    return ", ".join(parts) or "no details"


def _is_error(content: str | None) -> bool:
    try:
        body = json.loads(content or "null")
    except json.JSONDecodeError:
        return True
    return isinstance(body, dict) and "error" in body


def recorded_calls(messages: Sequence[Message]) -> list[tuple[str, dict[str, Any], Any]]:
    """(tool name, arguments, result) of every call that succeeded, first time only."""
    pending: dict[str, tuple[str, str]] = {}
    calls: list[tuple[str, dict[str, Any], Any]] = []
    seen: set[tuple[str, str]] = set()
    for message in messages:
        for call in message.tool_calls:
            pending[call.id] = (call.name, call.arguments)
        if message.role != "tool" or message.tool_call_id not in pending:
            continue
        name, arguments = pending.pop(message.tool_call_id)
        if _is_error(message.content) or (name, arguments) in seen:
            continue
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            continue
        if isinstance(args, dict):
            seen.add((name, arguments))
            calls.append((name, args, json.loads(message.content or "null")))
    return calls


def scenario_of(steps: Sequence[SubQuestion]) -> Scenario:
    """single_hop: one step; parallel: several, none dependent; multi_hop: a pure chain;
    parallel_multi_hop: dependencies and some hop level with more than one step."""
    levels = [s.hop for s in steps]
    crowded = len(levels) != len(set(levels))
    if max(levels, default=1) == 1:
        return "single_hop" if len(steps) <= 1 else "parallel"
    return "parallel_multi_hop" if crowded else "multi_hop"


def trace_from_trajectory(
    trajectory: Trajectory, task: Task, tools: Sequence[Tool], domain: str, source: str
) -> QATrace | None:
    """The QA trace of a completed trajectory, or None when it has no usable call."""
    if trajectory.status != "completed":
        return None
    described = {t.name: t for t in tools}
    steps: list[SubQuestion] = []
    produced: dict[str, str] = {}  # normalised returned value -> sid of its first producer
    for name, arguments, result in recorded_calls(trajectory.messages):
        picked = pick_answer(result, arguments)
        if picked is None:
            continue
        path, answer = picked
        sid = f"q{len(steps) + 1}"
        sources = {
            arg: produced[normalise(value)]
            for arg, value in arguments.items()
            if not isinstance(value, dict | list) and normalise(value) in produced
        }
        depends = sorted(set(sources.values()), key=lambda s: int(s[1:]))
        hop = 1 + max((steps[int(d[1:]) - 1].hop for d in depends), default=0)
        tool = described.get(name)
        purpose = (tool.description if tool else name).split(". ")[0].rstrip(".")
        steps.append(
            SubQuestion(
                sid=sid,
                question=f"{purpose} ({_call_text(arguments, sources)}): "
                f"what is the {_words(path)}?",
                answer=str(answer),
                hop=hop,
                depends_on=depends,
                needs_tool=True,
                tool_name=name,
                arguments=canonical_json(arguments),
                result=canonical_json(result),
            )
        )
        for _, value in leaves(result):
            produced.setdefault(normalise(value), sid)
    if not steps:
        return None
    hops = [s.hop for s in steps]
    steps = [s.model_copy(update={"parallel": hops.count(s.hop) > 1}) for s in steps]
    return QATrace(
        domain=domain,
        server_id=task.server_id,
        question=task.query,
        answer=steps[-1].answer,
        user_background=task.persona or "",
        scenario=scenario_of(steps),
        sub_questions=steps,
        source=source,
        parent_ids=[trajectory.id, task.id],
    )


def structure_checks(steps: Sequence[SubQuestion]) -> list[QACheck]:
    """The rule checks of a decomposition, one verdict each (see the module docstring).

    >>> a = SubQuestion(sid="a", question="?", answer="1", hop=1, needs_tool=True,
    ...                 tool_name="f", arguments="{}")
    >>> b = SubQuestion(sid="b", question="?", answer="2", hop=1, depends_on=["a"])
    >>> {c.dimension: c.passed for c in structure_checks([a, b])}
    {'ids': True, 'acyclic': True, 'hops': False, 'tool_for_non_leaf': True, 'calls': True}
    """
    sids = [s.sid for s in steps]
    by_sid = {s.sid: s for s in steps}
    unknown = sorted({d for s in steps for d in s.depends_on if d not in by_sid})
    duplicated = sorted({sid for sid in sids if sids.count(sid) > 1})
    checks = [
        QACheck(
            dimension="ids",
            passed=not unknown and not duplicated and bool(steps),
            detail=f"unknown dependencies {unknown}; repeated ids {duplicated}"
            if unknown or duplicated
            else ("no sub-questions" if not steps else ""),
        )
    ]
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(by_sid)
    graph.add_edges_from((d, s.sid) for s in steps for d in s.depends_on if d in by_sid)
    acyclic = nx.is_directed_acyclic_graph(graph)
    cycle = "" if acyclic else " -> ".join(str(edge[0]) for edge in nx.find_cycle(graph))
    checks.append(
        QACheck(dimension="acyclic", passed=acyclic, detail=f"cycle {cycle}" * bool(cycle))
    )
    wrong_hops = []
    if acyclic:
        for sid in nx.topological_sort(graph):
            step = by_sid[sid]
            want = 1 + max((by_sid[d].hop for d in step.depends_on if d in by_sid), default=0)
            if step.hop != want:
                wrong_hops.append(f"{sid}: hop {step.hop}, dependencies say {want}")
    checks.append(
        QACheck(
            dimension="hops",
            passed=acyclic and not wrong_hops,
            detail="; ".join(wrong_hops) if acyclic else "not checked: dependencies cycle",
        )
    )
    needed = {d for s in steps for d in s.depends_on}
    toolless = sorted(sid for sid in needed if sid in by_sid and by_sid[sid].needs_tool is not True)
    checks.append(
        QACheck(
            dimension="tool_for_non_leaf",
            passed=not toolless,
            detail=f"depended on but needs no tool: {toolless}" if toolless else "",
        )
    )
    callless = sorted(
        s.sid for s in steps if s.needs_tool and not (s.tool_name and s.arguments is not None)
    )
    checks.append(
        QACheck(
            dimension="calls",
            passed=not callless,
            detail=f"need a tool but have no call: {callless}" if callless else "",
        )
    )
    return checks
