"""``astra pipeline dedup``: each level, then ``curate``, in order, as idempotent jobs (run
by ``jobs.runner.run_jobs``)."""

from __future__ import annotations

from typing import Any, Literal

from jobs.base import Job
from jobs.dedup.jobs import Curate, Decontaminate, DedupExact, DedupNear, DedupSemantic

Level = Literal["exact", "near", "semantic", "contamination"]
LEVELS: tuple[Level, ...] = ("exact", "near", "semantic", "contamination")

_LEVEL_JOBS: dict[Level, type[Job]] = {
    "exact": DedupExact,
    "near": DedupNear,
    "semantic": DedupSemantic,
    "contamination": Decontaminate,
}


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
