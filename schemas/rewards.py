"""Rewards: one row per judged dimension of one target row.

A judgment that failed or could not be made has ``status`` ``failed`` or ``missing`` and no
score: it is never counted as a pass.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from schemas.base import Row, RowRule


class JudgeStatus(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    FAILED = "failed"


def _status_disagrees_with_score(table: pa.Table) -> pa.Array:
    ok = pc.equal(table["status"], JudgeStatus.OK.value)
    return pc.fill_null(pc.not_equal(ok, pc.is_valid(table["score"])), True)


def _score_out_of_range(table: pa.Table) -> pa.Array:
    score = table["score"]
    return pc.fill_null(pc.or_(pc.less(score, 0.0), pc.greater(score, 1.0)), False)


class Reward(Row):
    TABLE: ClassVar[str] = "rewards"
    ID_PREFIX: ClassVar[str] = "rwd"
    ID_FIELDS: ClassVar[tuple[str, ...]] = (
        "target_id",
        "dimension",
        "judge_model",
        "prompt_version",
    )
    ROW_RULES: ClassVar[tuple[RowRule, ...]] = (
        RowRule(
            "judgment_status: a score is required when status is 'ok' and forbidden otherwise",
            _status_disagrees_with_score,
        ),
        RowRule("score_range: scores are normalised to [0, 1]", _score_out_of_range),
    )

    target_table: str
    target_id: str
    dimension: str
    score: float | None
    status: JudgeStatus
    judge_model: str
    prompt_version: str
    rationale: str | None = None
    error: str | None = None
