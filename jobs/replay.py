"""Replay: re-execute a recorded run from its ``RunStarted`` event alone, in a scratch lake,
and compare the outputs' content hashes with the ones the log recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.params import parse_params
from jobs.registry import get_job
from jobs.runner import run_job
from lake import Lake


@dataclass(frozen=True)
class TableMatch:
    table: str
    recorded: str
    replayed: str | None

    @property
    def matches(self) -> bool:
        return self.recorded == self.replayed


@dataclass(frozen=True)
class ReplayReport:
    run_id: str
    job: str
    scratch_uri: str
    code_version_recorded: str
    code_version_now: str
    fingerprint_matches: bool
    tables: tuple[TableMatch, ...]

    @property
    def matches(self) -> bool:
        return self.fingerprint_matches and all(t.matches for t in self.tables)


class ReplayError(RuntimeError):
    pass


def replay_run(
    lake: Lake,
    run_id: str,
    scratch: str | Path,
    spark_factory: Callable[[], Any] | None = None,
) -> ReplayReport:
    """Re-execute ``run_id`` in the empty lake ``scratch``; Spark jobs need ``spark_factory``."""
    record = lake.get_run(run_id)
    started = record.started
    if record.finished is None:
        raise ReplayError(
            f"run {run_id} did not finish ({record.status}); only finished runs replay"
        )
    if started.job.startswith("lake."):
        raise ReplayError(
            f"run {run_id} is a direct {started.job} whose rows came with the call, not from "
            "a job; only job runs can be re-executed"
        )
    job_cls = get_job(started.job)
    job = job_cls(parse_params(job_cls.Params, dict(started.params)))
    scratch_lake = Lake(scratch)
    if scratch_lake.state.position:
        raise ReplayError(f"scratch lake {scratch} is not empty; give a new folder")
    for pinned in started.inputs:
        rows = lake.read(pinned.table, version=pinned.version).to_arrow()
        scratch_lake.append(pinned.table, rows, source=f"replay of {run_id}")
    fingerprint_matches = job.fingerprint() == started.fingerprint
    result = run_job(scratch_lake, job, seed=started.seed or 0, spark_factory=spark_factory)
    tables = []
    for commit in record.commits:
        if commit.table == "rejects":
            continue
        replayed = result.run.commit_for(commit.table)
        tables.append(
            TableMatch(
                commit.table, commit.content_hash, replayed.content_hash if replayed else None
            )
        )
    return ReplayReport(
        run_id=run_id,
        job=started.job,
        scratch_uri=scratch_lake.uri,
        code_version_recorded=started.code_version,
        code_version_now=job.code_version(),
        fingerprint_matches=fingerprint_matches,
        tables=tuple(tables),
    )
