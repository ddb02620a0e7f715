"""Runs a job against a lake: pins its inputs, records the run, commits its outputs.

After a job runs (not when an identical run is reused), every required output
(:meth:`jobs.base.Job.required_outputs`) that got no rows although every input had rows is
reported in ``JobResult.empty`` and in the run's ``metrics["empty"]``. A job with no inputs
(ingest) reads a source instead, so any required output it leaves without rows is empty.
An input that is itself empty excuses the job: the stage that emptied it was reported.
``run_jobs`` stops a pipeline after the first stage with an empty output (found now, or
recorded by the earlier run a stage reuses) unless told ``allow_empty``; the empty stage's
commit stays, as it is the truth about its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
        empty = empty_outputs(job, ctx)
        run.metrics.update({"kept": dict(ctx.kept), "dropped": dict(ctx.dropped)})
        if empty:
            run.metrics["empty"] = empty
    return JobResult(
        job=job.name,
        run=run.result,
        kept=dict(ctx.kept),
        dropped=dict(ctx.dropped),
        empty=empty,
    )


def empty_outputs(job: Job, ctx: JobContext) -> dict[str, str]:
    """``{table: reason}`` for each required output of ``job`` that got no rows in this run
    although every input had rows (row counts from the pinned views' metadata)."""
    missing = [t for t in job.required_outputs() if not ctx.kept.get(t)]
    if not missing:
        return {}
    counts = {table: view.count_rows() for table, view in ctx.inputs.items()}
    if not all(counts.values()):
        return {}
    return {t: ctx.empty_reasons.get(t) or generic_reason(counts, ctx.dropped) for t in missing}


def generic_reason(inputs: Mapping[str, int], dropped: Mapping[str, int]) -> str:
    """Why an output got no rows, from what the job read and what it counted as dropped.

    >>> generic_reason({"tools": 3, "chains": 120}, {"task_below_threshold": 120})
    'its inputs had rows (tools: 3, chains: 120); dropped: task_below_threshold: 120'
    >>> generic_reason({}, {})
    'nothing in its source became a row and nothing was counted as dropped'
    """
    read = (
        "its inputs had rows (" + ", ".join(f"{t}: {n}" for t, n in inputs.items()) + ")"
        if inputs
        else "nothing in its source became a row"
    )
    drops = [f"{reason}: {n}" for reason, n in sorted(dropped.items()) if n]
    if not drops:
        return f"{read} and nothing was counted as dropped"
    return f"{read}; dropped: " + ", ".join(drops)


@dataclass(frozen=True)
class StageOutcome:
    """One job of a pipeline and what its run did."""

    stage: str
    result: JobResult

    @property
    def empty(self) -> dict[str, str]:
        """``{table: reason}`` for the outputs this stage left empty: found by its run, or,
        when it reused an identical earlier run, what that run recorded (the rows are the
        same, so a rerun stops where the first run stopped)."""
        if self.result.reused:
            return dict(self.result.run.metrics.get("empty") or {})
        return self.result.empty

    def empty_message(self) -> str:
        """``"STAGE wrote no TABLE: REASON"`` for each empty output, joined by ``"; "``."""
        reused = f" (reused run {self.result.run.run_id})" if self.result.reused else ""
        return "; ".join(
            f"{self.stage} wrote no {table}{reused}: {reason}"
            for table, reason in self.empty.items()
        )


class EmptyOutputError(Exception):
    """A pipeline stage wrote no rows to a required output although its inputs had rows.

    ``outcomes`` holds every stage that ran, the empty one last (its commit stays)."""

    def __init__(self, outcomes: Sequence[StageOutcome]) -> None:
        self.outcomes = list(outcomes)
        self.stage = self.outcomes[-1]
        super().__init__(self.stage.empty_message())


def run_jobs(
    lake: Lake,
    jobs: Sequence[Job],
    *,
    seed: int = 0,
    spark_factory: Callable[[], Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    count_progress: CountProgressFn | None = None,
    allow_empty: bool = False,
) -> list[StageOutcome]:
    """Run ``jobs`` in order with ``run_job`` (each reads what the ones before it committed).

    ``on_stage(name)`` is called as each job starts; ``count_progress`` gets the jobs' Spark
    task counts and rows written. A stage that leaves a required output empty although its
    inputs had rows raises :class:`EmptyOutputError` after its commit, so no later stage runs;
    so does a stage that reuses such a run (see :attr:`StageOutcome.empty`). With
    ``allow_empty`` every stage runs and the reasons stay in each outcome's ``empty``."""
    outcomes = []
    for job in jobs:
        if on_stage is not None:
            on_stage(job.name)
        result = run_job(
            lake, job, seed=seed, spark_factory=spark_factory, count_progress=count_progress
        )
        outcomes.append(StageOutcome(job.name, result))
        if outcomes[-1].empty and not allow_empty:
            raise EmptyOutputError(outcomes)
    return outcomes
