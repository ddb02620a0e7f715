"""Benchmark evaluation results, one row per benchmark entry and checkpoint."""

from __future__ import annotations

from typing import ClassVar

from schemas.base import Json, Row


class Eval(Row):
    TABLE: ClassVar[str] = "evals"
    ID_PREFIX: ClassVar[str] = "eval"
    ID_FIELDS: ClassVar[tuple[str, ...]] = (
        "checkpoint",
        "benchmark",
        "benchmark_version",
        "entry_id",
    )

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
