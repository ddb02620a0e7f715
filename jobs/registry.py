"""Every job the ``astra run`` command knows, by name."""

from __future__ import annotations

import difflib

from jobs.base import Job
from jobs.dedup import DEDUP_JOBS
from jobs.environments import BuildEnvironments, SynthesizeQA
from jobs.graph import BuildToolGraph
from jobs.ingest import IngestCatalog
from jobs.search import BuildSearchIndex
from jobs.trajectories import TRAJECTORY_STAGES

JOBS: dict[str, type[Job]] = {
    job.name: job
    for job in (
        IngestCatalog,
        BuildToolGraph,
        *TRAJECTORY_STAGES,
        SynthesizeQA,
        BuildEnvironments,
        BuildSearchIndex,
        *DEDUP_JOBS,
    )
}


def get_job(name: str) -> type[Job]:
    job = JOBS.get(name)
    if job is None:
        close = difflib.get_close_matches(name, JOBS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no job {name!r}; jobs are {sorted(JOBS)}.{hint}")
    return job
