"""RL rollouts: what the policy sampled, what the tools returned, and the reward."""

from __future__ import annotations

from typing import Any, ClassVar

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
    # 2: ``generator`` (which sampler produced the rollout: "transformers X" or "vllm X").
    SCHEMA_VERSION: ClassVar[int] = 2
    UPCASTS: ClassVar[dict[int, Any]] = {1: lambda record: {**record, "generator": None}}

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
    #: The sampler and its version, e.g. "transformers 5.24.0" or "vllm 0.32.0"; None on rows
    #: written before it was recorded.
    generator: str | None = None
