"""SFT examples: curated trajectories rendered as chat + tools, ready for a trainer."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct
from schemas.trajectories import Message


class FunctionSpec(Struct):
    """One entry of the OpenAI ``tools`` list; ``parameters`` is the JSON schema as text."""

    name: str
    description: str
    parameters: str


class SFTExample(Row):
    TABLE: ClassVar[str] = "sft_examples"
    ID_PREFIX: ClassVar[str] = "sft"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("trajectory_id", "messages", "tools")

    trajectory_id: str
    domain: str
    messages: list[Message]
    tools: list[FunctionSpec]
    reward: float
    split: Literal["train", "eval"]
