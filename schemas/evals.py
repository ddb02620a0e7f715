"""Benchmark evaluation results, one row per benchmark entry, evaluated model and settings."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from schemas.base import Json, Row


def _add_settings(record: dict[str, Any]) -> dict[str, Any]:
    """Version 1 rows did not record the evaluation settings: they become ``{}``."""
    record.setdefault("settings", {})
    if record["settings"] is None:
        record["settings"] = {}
    return record


class Eval(Row):
    """One benchmark entry scored for one model.

    ``checkpoint`` names what was evaluated: a ``checkpoints`` row id (then ``parent_ids``
    holds it, so lineage runs from the result to the checkpoint and its data), or the model
    folder or endpoint model for a model the lake did not train. ``settings`` are what shaped
    the answers (the policy, its generation settings, the step limit): the same entry scored
    under other settings is another row. ``passed``/``score`` are None when no verdict could
    be had (the model or endpoint failed), with the reason in ``error``.
    """

    TABLE: ClassVar[str] = "evals"
    ID_PREFIX: ClassVar[str] = "eval"
    ID_FIELDS: ClassVar[tuple[str, ...]] = (
        "checkpoint",
        "benchmark",
        "benchmark_version",
        "entry_id",
        "settings",
    )
    SCHEMA_VERSION: ClassVar[int] = 2
    UPCASTS: ClassVar[dict[int, Any]] = {1: _add_settings}

    checkpoint: str
    snapshot: str | None = None
    benchmark: str
    benchmark_version: str
    category: str
    entry_id: str
    passed: bool | None
    score: float | None
    details: Json
    error: str | None = None
    settings: Json = Field(default_factory=dict)
