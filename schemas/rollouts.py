"""RL rollouts: what the policy sampled, what the tools returned, and the reward."""

from __future__ import annotations

from typing import ClassVar

from schemas.base import Row, Struct
from schemas.trajectories import Message


class ToolResult(Struct):
    call_id: str
    name: str
    ok: bool
    value_json: str | None = None
    error: str | None = None
    result_digest: str


class RewardPart(Struct):
    name: str
    value: float | None


class Rollout(Row):
    TABLE: ClassVar[str] = "rollouts"
    ID_PREFIX: ClassVar[str] = "roll"
    ID_FIELDS: ClassVar[tuple[str, ...]] = (
        "environment_id",
        "group_id",
        "sample_index",
        "policy_checkpoint",
    )

    environment_id: str
    group_id: str
    sample_index: int
    policy_checkpoint: str
    snapshot: str
    messages: list[Message]
    token_ids: list[int]
    loss_mask: list[int]
    tool_results: list[ToolResult]
    reward: float | None
    reward_parts: list[RewardPart]
    runtime_digest: str
