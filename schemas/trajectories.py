"""Agent trajectories in the OpenAI tools message format."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct


class ToolCall(Struct):
    """One function call; ``arguments`` is the JSON text the model emitted (it may not parse)."""

    id: str
    name: str
    arguments: str


class Message(Struct):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None
    name: str | None = None


class Trajectory(Row):
    TABLE: ClassVar[str] = "trajectories"
    ID_PREFIX: ClassVar[str] = "traj"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("task_id", "messages", "agent_model", "seed")

    task_id: str
    tool_ids: list[str]
    messages: list[Message]
    agent_model: str
    executor: Literal["sandbox", "llm_simulator", "offline_simulator"]
    seed: int
    n_turns: int
    n_tool_calls: int
    status: Literal["completed", "turn_limit", "error"]
    final_answer: str | None = None
