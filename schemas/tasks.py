"""User tasks (queries) generated from chains or servers, with their rubric scores."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct
from schemas.rewards import JudgeStatus

Augmentation = Literal["original", "diverse", "complicate", "persona"]


class RubricScore(Struct):
    """A 1-5 rubric score; ``score`` is None unless ``status`` is ``ok``."""

    criterion: str
    score: float | None
    status: JudgeStatus
    judge_model: str | None = None


class Task(Row):
    TABLE: ClassVar[str] = "tasks"
    ID_PREFIX: ClassVar[str] = "task"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("server_id", "chain_id", "query", "augmentation")

    server_id: str
    chain_id: str | None = None
    query: str
    augmentation: Augmentation = "original"
    persona: str | None = None
    language: str = "en"
    scores: list[RubricScore] = []
