"""Runs a job against a lake: pins its inputs, records the run, commits its outputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.base import (
    CountProgressFn,
    Job,
    JobContext,
    JobResult,
    ProgressFn,
    no_progress,
    params_dict,
)
from lake import Lake, TableNotFoundError


def run_job(
    lake: Lake,
    job: Job,
    *,
    seed: int = 0,
    snapshot: str | None = None,
    progress: ProgressFn = no_progress,
    count_progress: CountProgressFn | None = None,
    spark_factory: Callable[[], Any] | None = None,
) -> JobResult:
    """Run ``job`` once. An identical earlier run (same key) makes this a no-op.

    Inputs are read at the latest committed versions, or at ``snapshot`` when given.
    ``progress`` wraps the job's in-process loops; ``count_progress`` receives its Spark
    stages' task counts and the rows each output write produced.
    """
    versions: dict[str, int] = {}
    for table in job.inputs:
        try:
            versions[table] = lake.resolve_version(table, snapshot=snapshot)
        except TableNotFoundError as exc:
            raise TableNotFoundError(f"{job.name} needs input {table!r}: {exc}") from None
    run = lake.run(
        job.name,
        params_dict(job.params),
        seed=seed,
        code_version=job.code_version(),
        inputs=versions,
        fingerprint=job.fingerprint(),
    )
    if run.reused:
        return JobResult(job=job.name, run=run.result, kept={}, dropped={})
    inputs = {t: lake.read(t, version=v) for t, v in versions.items()}
    ctx = JobContext(
        job=job,
        run=run,
        inputs=inputs,
        seed=seed,
        progress=progress,
        count_progress=count_progress,
        spark_factory=spark_factory,
    )
    with run:
        job.run(ctx)
        run.metrics.update({"kept": dict(ctx.kept), "dropped": dict(ctx.dropped)})
    return JobResult(job=job.name, run=run.result, kept=dict(ctx.kept), dropped=dict(ctx.dropped))


@dataclass(frozen=True)
class StageOutcome:
    """One job of a pipeline and what its run did."""

    stage: str
    result: JobResult


def run_jobs(
    lake: Lake,
    jobs: Sequence[Job],
    *,
    seed: int = 0,
    spark_factory: Callable[[], Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    count_progress: CountProgressFn | None = None,
) -> list[StageOutcome]:
    """Run ``jobs`` in order with ``run_job`` (each reads what the ones before it committed).

    ``on_stage(name)`` is called as each job starts; ``count_progress`` gets the jobs' Spark
    task counts and rows written."""
    outcomes = []
    for job in jobs:
        if on_stage is not None:
            on_stage(job.name)
        result = run_job(
            lake, job, seed=seed, spark_factory=spark_factory, count_progress=count_progress
        )
        outcomes.append(StageOutcome(job.name, result))
    return outcomes
