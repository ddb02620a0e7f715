"""SFT selection: completed trajectories whose mean rule reward clears a threshold.

A trajectory is kept when its status is ``completed`` and the mean of its rule rewards
(:func:`jobs.synth.rewards.mean_reward`: a missing reward counts as 0) is at least
``threshold``. Each kept one becomes an :class:`schemas.SFTExample` with its messages and the
OpenAI function specs of the tools it was offered. The train/eval split hashes the seed and the
trajectory id, so it does not depend on input order or on which other rows are present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from jobs.synth.rewards import mean_reward
from jobs.synth.tasks import stable_seed
from schemas import FunctionSpec, Reward, SFTExample, Tool, Trajectory, canonical_json


def split_of(trajectory_id: str, eval_fraction: float, seed: int) -> Literal["train", "eval"]:
    """``eval`` for a stable ``eval_fraction`` share of ids, else ``train``.

    >>> split_of("traj-1", 0.0, 0), split_of("traj-1", 1.0, 0)
    ('train', 'eval')
    """
    unit = stable_seed("split", seed, trajectory_id) / 2**64
    return "eval" if unit < eval_fraction else "train"


def function_specs(tools: Sequence[Tool]) -> list[FunctionSpec]:
    """The OpenAI ``tools`` list entries of ``tools``, parameters as canonical JSON."""
    return [
        FunctionSpec(
            name=t.name, description=t.description, parameters=canonical_json(t.parameters)
        )
        for t in tools
    ]


def select_sft(
    trajectories: Sequence[Trajectory],
    rewards: Sequence[Reward],
    tools: Sequence[Tool],
    *,
    threshold: float,
    eval_fraction: float,
    seed: int,
    weights: Mapping[str, float] | None = None,
    run_id: str | None = None,
) -> list[SFTExample]:
    """SFT examples from the trajectories that pass, in the input order of trajectories."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    by_target: dict[str, list[Reward]] = {}
    for reward in rewards:
        by_target.setdefault(reward.target_id, []).append(reward)
    tools_by_id = {t.id: t for t in tools}
    examples: list[SFTExample] = []
    for trajectory in trajectories:
        if trajectory.status != "completed":
            continue
        rows = by_target.get(trajectory.id, [])
        if not rows:
            continue
        score = mean_reward(rows, weights)
        if score < threshold:
            continue
        offered = [tools_by_id[i] for i in trajectory.tool_ids if i in tools_by_id]
        if len(offered) != len(trajectory.tool_ids):
            continue
        examples.append(
            SFTExample(
                trajectory_id=trajectory.id,
                domain=offered[0].domain if offered else "general",
                messages=trajectory.messages,
                tools=function_specs(offered),
                reward=score,
                split=split_of(trajectory.id, eval_fraction, seed),
                run_id=run_id,
                parent_ids=[trajectory.id, *(r.id for r in rows)],
            )
        )
    return examples
