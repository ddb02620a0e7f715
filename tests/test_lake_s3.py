"""The lake on an S3-compatible object store (moto, on loopback), not only a local folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import tools_table

from jobs.ingest import IngestCatalog, IngestParams
from jobs.replay import replay_run
from jobs.runner import run_job
from lake import Lake, content_hash

pytest.importorskip("moto.server", reason="moto[server] is not installed")
from s3_server import S3Server, start_s3_server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with start_s3_server() as server:
        yield server


@pytest.fixture
def s3_lake(s3: S3Server, tmp_path: Path) -> Lake:
    return Lake(s3.unique_uri("lake"), storage_options=s3.storage_options, lock_dir=tmp_path)


def test_jobs_snapshots_and_reads_work_on_s3(s3_lake: Lake, sample_rows, tmp_path: Path) -> None:
    assert s3_lake.uri.startswith("s3://")
    result = run_job(s3_lake, IngestCatalog(IngestParams()))
    assert not result.reused
    assert run_job(s3_lake, IngestCatalog(IngestParams())).reused
    tools_version = s3_lake.state.versions["tools"]
    s3_lake.create_snapshot("on-s3")
    pinned = content_hash(s3_lake.read("tools", snapshot="on-s3").to_arrow())

    extra = [t.model_copy(update={"id": "", "name": t.name + "_v2"}) for t in sample_rows[1][:4]]
    s3_lake.append("tools", tools_table([type(t).model_validate(t.model_dump()) for t in extra]))
    assert s3_lake.state.versions["tools"] == tools_version + 1
    assert content_hash(s3_lake.read("tools", snapshot="on-s3").to_arrow()) == pinned
    frame = s3_lake.query("SELECT count(*) AS n FROM tools")
    assert frame["n"][0] == len(sample_rows[1]) + 4

    # A fresh handle on the same URI sees the same committed state.
    again = Lake(s3_lake.uri, storage_options=s3_lake.store.storage_options, lock_dir=tmp_path)
    assert again.state.versions == s3_lake.state.versions
    report = replay_run(again, result.run.run_id, tmp_path / "scratch")
    assert report.matches
