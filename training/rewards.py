"""Trajectory rewards for environments: registered pure functions of what a rollout did.

ASTRA's reward, with n sub-tasks, n̂ of them solved (a call of the sub-task's tool returned
its expected answer) and c tool calls: recall r = n̂ / n, precision p = n̂ / (c + ε), and
F1 = 2pr / (p + r). Recall alone rewards spamming calls; precision alone rewards not calling.

Every reward takes a :class:`Outcome` and returns a float in [0, 1]; ``REWARDS`` maps names to
them so a training config can name the one it optimises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.answers import holds_answer
from schemas.environments import ExpectedAnswer

EPSILON = 1e-6


@dataclass(frozen=True)
class Outcome:
    """What a rollout achieved: sub-tasks solved out of all, and tool calls made."""

    solved: int
    total: int
    calls: int


RewardFn = Callable[[Outcome], float]
REWARDS: dict[str, RewardFn] = {}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return add


@register("recall")
def recall(outcome: Outcome) -> float:
    """Share of sub-tasks solved.

    >>> recall(Outcome(solved=2, total=4, calls=9))
    0.5
    >>> recall(Outcome(solved=0, total=0, calls=0))
    0.0
    """
    return outcome.solved / outcome.total if outcome.total else 0.0


@register("precision")
def precision(outcome: Outcome) -> float:
    """Solved sub-tasks per tool call.

    >>> round(precision(Outcome(solved=2, total=4, calls=4)), 6)
    0.5
    >>> precision(Outcome(solved=0, total=3, calls=0))
    0.0
    """
    return outcome.solved / (outcome.calls + EPSILON) if outcome.solved else 0.0


@register("f1")
def f1(outcome: Outcome) -> float:
    """ASTRA's trajectory reward: the harmonic mean of recall and precision.

    >>> round(f1(Outcome(solved=3, total=3, calls=3)), 4)
    1.0
    >>> round(f1(Outcome(solved=3, total=3, calls=12)), 4)  # spamming calls costs
    0.4
    >>> f1(Outcome(solved=0, total=3, calls=5))
    0.0
    """
    r, p = recall(outcome), precision(outcome)
    return 2 * p * r / (p + r) if p + r else 0.0


def solved_subtasks(
    expected: Sequence[ExpectedAnswer], calls: Sequence[tuple[str, Any]]
) -> set[str]:
    """Sub-question ids solved by ``calls`` ((tool name, returned value) pairs, in order).

    >>> want = [ExpectedAnswer(sub_question_id="q1", tool_name="f", answer="AF1")]
    >>> solved_subtasks(want, [("g", {"id": "AF1"}), ("f", {"flights": [{"id": "af1"}]})])
    {'q1'}
    """
    solved = set()
    for answer in expected:
        if any(
            name == answer.tool_name and holds_answer(value, answer.answer) for name, value in calls
        ):
            solved.add(answer.sub_question_id)
    return solved


def outcome_of(expected: Sequence[ExpectedAnswer], calls: Sequence[tuple[str, Any]]) -> Outcome:
    return Outcome(
        solved=len(solved_subtasks(expected, calls)), total=len(expected), calls=len(calls)
    )
