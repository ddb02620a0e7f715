"""Rule-based trajectory rewards: pure functions in an explicit registry.

Each rule returns a score in [0, 1], or None when it cannot judge (then the reward row is
``missing`` with no score; a missing judgment is never a pass). :func:`score_trajectory`
writes one :class:`schemas.Reward` row per rule with ``judge_model="rule"`` and the rule's
version as ``prompt_version``. Weights name rules of the registry; an unknown name is an error.

Rules (ASTRA's rule-decidable dimensions, plus chain coverage):

- ``schema_valid_calls``: share of calls whose arguments parse as a JSON object, name a known
  tool, include every required parameter, use only declared parameters and match their
  declared JSON types and enums.
- ``tool_call_success``: successful calls / calls (a call answered by an error payload fails).
- ``conciseness``: share of calls that do not repeat an identical earlier successful call
  (a retry after a failure is not redundant).
- ``final_answer_grounded``: 0 without a final answer; 1 if it mentions a value from the last
  successful tool output; 0.5 if it mentions none. None when no call succeeded.
- ``chain_coverage``: share of the chain's tools called successfully in chain order
  (greedy in-order matching). None without a chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.synth.agent import is_error_content
from schemas import Chain, Reward, Tool, Trajectory, canonical_json
from schemas.rewards import JudgeStatus

JUDGE_MODEL = "rule"


@dataclass(frozen=True)
class CallRecord:
    """One tool call of a trajectory with its result."""

    name: str
    arguments: str
    ok: bool
    output: str | None


def calls_of(trajectory: Trajectory) -> list[CallRecord]:
    """The trajectory's tool calls in order, each paired with its tool message."""
    results = {m.tool_call_id: m.content for m in trajectory.messages if m.role == "tool"}
    records = []
    for message in trajectory.messages:
        for call in message.tool_calls:
            output = results.get(call.id)
            records.append(
                CallRecord(call.name, call.arguments, not is_error_content(output), output)
            )
    return records


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, schema: Mapping[str, Any]) -> bool:
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    for k in kinds:
        types = _JSON_TYPES.get(k, (object,))
        if isinstance(value, bool) and k in ("integer", "number"):
            continue
        if isinstance(value, types):
            return True
    return False


def schema_valid_calls(
    calls: Sequence[tuple[str, str]], parameters: Mapping[str, Mapping[str, Any]]
) -> float | None:
    """Share of ``(tool name, arguments JSON)`` calls valid against the tools' parameters.

    >>> params = {"f": {"type": "object", "properties": {"x": {"type": "integer"}},
    ...                 "required": ["x"]}}
    >>> schema_valid_calls([("f", '{"x": 1}'), ("f", '{"x": "1"}')], params)
    0.5
    >>> schema_valid_calls([("f", "not json"), ("g", "{}")], params)
    0.0
    >>> schema_valid_calls([], params) is None
    True
    """
    if not calls:
        return None
    valid = 0
    for name, arguments in calls:
        schema = parameters.get(name)
        if schema is None:
            continue
        try:
            args = json.loads(arguments)
        except ValueError:
            continue
        if not isinstance(args, dict):
            continue
        properties = schema.get("properties") or {}
        if any(r not in args for r in schema.get("required") or []):
            continue
        if all(k in properties and _type_ok(v, properties[k]) for k, v in args.items()):
            valid += 1
    return valid / len(calls)


def tool_call_success(outcomes: Sequence[bool]) -> float | None:
    """Successful calls / calls.

    >>> tool_call_success([True, False, True, True])
    0.75
    >>> tool_call_success([]) is None
    True
    """
    if not outcomes:
        return None
    return sum(outcomes) / len(outcomes)


def conciseness(calls: Sequence[tuple[str, str, bool]]) -> float | None:
    """Share of ``(name, arguments, ok)`` calls that do not repeat an earlier successful one.

    Arguments are compared as parsed JSON (key order does not matter).

    >>> conciseness([("f", '{"a":1}', False), ("f", '{"a":1}', True)])
    1.0
    >>> conciseness([("f", '{"a":1,"b":2}', True), ("f", '{"b":2,"a":1}', True)])
    0.5
    >>> conciseness([]) is None
    True
    """
    if not calls:
        return None
    done: set[tuple[str, str]] = set()
    concise = 0
    for name, arguments, ok in calls:
        try:
            key = (name, canonical_json(json.loads(arguments)))
        except ValueError:
            key = (name, arguments)
        if key not in done:
            concise += 1
        if ok:
            done.add(key)
    return concise / len(calls)


def _output_values(output: Any) -> list[str]:
    if isinstance(output, dict):
        return [v for value in output.values() for v in _output_values(value)]
    if isinstance(output, list):
        return [v for value in output for v in _output_values(value)]
    if isinstance(output, bool) or output is None:
        return []
    text = str(output)
    return [text] if len(text) >= 2 else []


def final_answer_grounded(final_answer: str | None, last_output: str | None) -> float | None:
    """1 if the answer quotes a value of the last successful output, 0.5 if not, 0 if absent.

    >>> final_answer_grounded("Booked: BK-12.", '{"booking_id": "BK-12"}')
    1.0
    >>> final_answer_grounded("All done!", '{"booking_id": "BK-12"}')
    0.5
    >>> final_answer_grounded(None, '{"booking_id": "BK-12"}')
    0.0
    >>> final_answer_grounded("Sorry.", None) is None
    True
    """
    if last_output is None:
        return None
    if not final_answer or not final_answer.strip():
        return 0.0
    try:
        parsed = json.loads(last_output)
    except ValueError:
        parsed = last_output
    values = _output_values(parsed)
    return 1.0 if any(v in final_answer for v in values) else 0.5


def chain_coverage(called: Sequence[str], chain: Sequence[str] | None) -> float | None:
    """Share of the chain's tools found, in order, among the successfully called tools.

    >>> chain_coverage(["a", "b", "c"], ["a", "b", "c"])
    1.0
    >>> chain_coverage(["b", "a"], ["a", "b"])
    0.5
    >>> chain_coverage(["a"], None) is None
    True
    """
    if not chain:
        return None
    position = 0
    for name in called:
        if position < len(chain) and name == chain[position]:
            position += 1
    return position / len(chain)


@dataclass(frozen=True)
class RuleInput:
    """What every rule may look at, extracted once per trajectory."""

    calls: list[CallRecord]
    parameters: dict[str, Mapping[str, Any]]
    final_answer: str | None
    chain: list[str] | None


@dataclass(frozen=True)
class Rule:
    """A registered rule reward: its name, version and how it reads a :class:`RuleInput`."""

    name: str
    version: str
    score: Callable[[RuleInput], float | None]


def _last_success(calls: Sequence[CallRecord]) -> str | None:
    return next((c.output for c in reversed(calls) if c.ok), None)


REGISTRY: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "schema_valid_calls",
            "1",
            lambda x: schema_valid_calls([(c.name, c.arguments) for c in x.calls], x.parameters),
        ),
        Rule("tool_call_success", "1", lambda x: tool_call_success([c.ok for c in x.calls])),
        Rule(
            "conciseness",
            "1",
            lambda x: conciseness([(c.name, c.arguments, c.ok) for c in x.calls]),
        ),
        Rule(
            "final_answer_grounded",
            "1",
            lambda x: final_answer_grounded(x.final_answer, _last_success(x.calls)),
        ),
        Rule(
            "chain_coverage",
            "1",
            lambda x: chain_coverage([c.name for c in x.calls if c.ok], x.chain),
        ),
    )
}
"""Every rule reward, by name."""


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validate weights against the registry: known names, non-negative, not all zero.

    >>> check_weights({"tool_call_success": 2.0})
    {'tool_call_success': 2.0}
    >>> check_weights({"helpfulness": 1.0})
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'helpfulness'; registered: chain_coverage, conciseness, \
final_answer_grounded, schema_valid_calls, tool_call_success
    """
    for name, weight in weights.items():
        if name not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ValueError(f"unknown reward {name!r}; registered: {known}")
        if weight < 0:
            raise ValueError(f"reward weight for {name!r} must be >= 0, got {weight}")
    if weights and sum(weights.values()) <= 0:
        raise ValueError("reward weights must not all be zero")
    return dict(weights)


def score_trajectory(
    trajectory: Trajectory,
    tools: Sequence[Tool],
    chain: Chain | None,
    *,
    rules: Sequence[str] | None = None,
    run_id: str | None = None,
) -> list[Reward]:
    """One ``Reward`` row per rule (all registered rules unless ``rules`` names some)."""
    names = list(REGISTRY) if rules is None else list(rules)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown rewards {unknown}; registered: {sorted(REGISTRY)}")
    data = RuleInput(
        calls=calls_of(trajectory),
        parameters={t.name: t.parameters for t in tools},
        final_answer=trajectory.final_answer,
        chain=list(chain.tool_names) if chain is not None else None,
    )
    rows = []
    for name in names:
        rule = REGISTRY[name]
        score = rule.score(data)
        rows.append(
            Reward(
                target_table="trajectories",
                target_id=trajectory.id,
                dimension=name,
                score=score,
                status=JudgeStatus.OK if score is not None else JudgeStatus.MISSING,
                judge_model=JUDGE_MODEL,
                prompt_version=rule.version,
                error=None if score is not None else "the rule could not judge this trajectory",
                run_id=run_id,
                parent_ids=[trajectory.id],
            )
        )
    return rows


def mean_reward(rewards: Sequence[Reward], weights: Mapping[str, float] | None = None) -> float:
    """Weighted mean of rule rewards; a missing or failed one counts as 0 (fail closed).

    Only rows with ``judge_model == "rule"`` count; with no weights every registered rule
    present in ``rewards`` weighs 1.
    """
    rule_rows = {r.dimension: r for r in rewards if r.judge_model == JUDGE_MODEL}
    active = check_weights(weights) if weights else dict.fromkeys(rule_rows, 1.0)
    total = sum(active.values())
    if total <= 0:
        return 0.0
    score = 0.0
    for name, weight in active.items():
        row = rule_rows.get(name)
        if row is not None and row.status == JudgeStatus.OK and row.score is not None:
            score += weight * row.score
    return score / total
