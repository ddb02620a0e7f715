"""``astra pipeline dedup``: each level, then ``curate``, in order, as idempotent jobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jobs.base import CountProgressFn, Job, JobResult
from jobs.dedup.jobs import Curate, Decontaminate, DedupExact, DedupNear, DedupSemantic
from jobs.runner import run_job
from lake import Lake

Level = Literal["exact", "near", "semantic", "contamination"]
LEVELS: tuple[Level, ...] = ("exact", "near", "semantic", "contamination")

_LEVEL_JOBS: dict[Level, type[Job]] = {
    "exact": DedupExact,
    "near": DedupNear,
    "semantic": DedupSemantic,
    "contamination": Decontaminate,
}


@dataclass(frozen=True)
class DedupOutcome:
    stage: str
    result: JobResult


def dedup_jobs(
    levels: tuple[Level, ...] = LEVELS, params: dict[Level, dict[str, Any]] | None = None
) -> list[Job]:
    """Each level's job (with ``params[level]`` set on its defaults), each followed by curate."""
    unknown = [level for level in levels if level not in _LEVEL_JOBS]
    if unknown or not levels:
        raise ValueError(f"levels {list(levels)}: choose from {list(LEVELS)}")
    jobs: list[Job] = []
    for level in LEVELS:
        if level not in levels:
            continue
        job = _LEVEL_JOBS[level]
        jobs.append(job(job.Params(**(params or {}).get(level, {}))))
        jobs.append(Curate(Curate.Params()))
    return jobs


def run_dedup_pipeline(
    lake: Lake,
    jobs: list[Job],
    spark_factory: Callable[[], Any],
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
    count_progress: CountProgressFn | None = None,
) -> list[DedupOutcome]:
    """Run ``jobs`` in order on ``lake``; the Spark session comes from ``spark_factory``;
    ``count_progress`` gets the Spark task counts and rows written."""
    outcomes = []
    for job in jobs:
        if on_stage is not None:
            on_stage(job.name)
        result = run_job(
            lake, job, seed=seed, spark_factory=spark_factory, count_progress=count_progress
        )
        outcomes.append(DedupOutcome(job.name, result))
    return outcomes
