"""Model checkpoints written by training runs, each pinned to the lake snapshot it read."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Json, Row
from schemas.snapshots import PinnedTable


class Checkpoint(Row):
    """One saved model. ``parent_ids`` are the rows it was trained on (SFT examples or
    environments), so lineage walks from a checkpoint down to tool schemas."""

    TABLE: ClassVar[str] = "checkpoints"
    ID_PREFIX: ClassVar[str] = "ckpt"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("training_run", "step", "path")

    kind: Literal["sft", "rl"]
    training_run: str
    step: int
    path: str
    base_model: str
    snapshot: str
    inputs: list[PinnedTable]
    metrics: Json
