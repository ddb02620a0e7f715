"""Crash safety and concurrency, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc

from lake import Lake

WORKER = Path(__file__).with_name("lake_worker.py")
ROOT = Path(__file__).resolve().parent.parent


def worker(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> int:
    _, err = proc.communicate(timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(err.decode())
    return proc.returncode


def test_kill_after_staging_leaves_nothing_visible(tmp_path: Path) -> None:
    uri = tmp_path / "lake"
    assert finish(worker("append", uri, 5, "good")) == 0
    assert finish(worker("die-staged", uri, 7)) == -signal.SIGKILL
    lake = Lake(uri)
    assert lake.read("tools").count_rows() == 5
    assert lake.state.versions["tools"] == 1
    assert finish(worker("append", uri, 3, "after")) == 0
    names = Lake(uri).read("tools").to_arrow(columns=["name"])["name"].to_pylist()
    assert len(names) == 8
    assert not [n for n in names if n.startswith("doomed")]


def test_kill_between_data_and_log_commit_is_rolled_back(tmp_path: Path) -> None:
    uri = tmp_path / "lake"
    assert finish(worker("append", uri, 5, "good")) == 0
    assert finish(worker("die-before-log", uri, 7)) == -signal.SIGKILL
    lake = Lake(uri)
    # Lance has the dead run's version on disk, but the lake does not show it.
    assert lake.store.open("tools").version == 2
    assert lake.read("tools").count_rows() == 5
    died = [r for r in lake.runs() if r.started.job == "test.die"]
    assert [r.status for r in died] == ["unfinished"]
    assert finish(worker("append", uri, 3, "after")) == 0
    lake = Lake(uri)
    names = lake.read("tools").to_arrow(columns=["name"])["name"]
    assert len(names) == 8
    assert not pc.any(pc.starts_with(names, "doomed")).as_py()
    discarded = [
        e for _, e in lake.events("tools") if type(e).__name__ == "UncommittedVersionsDiscarded"
    ]
    assert len(discarded) == 1 and discarded[0].discarded == (2,)


def test_concurrent_appends_from_two_processes_lose_no_rows(tmp_path: Path) -> None:
    uri = tmp_path / "lake"
    runs, rows = 6, 25
    procs = [worker("loop", uri, runs, rows, tag) for tag in ("a", "b")]
    assert [finish(p) for p in procs] == [0, 0]
    lake = Lake(uri)
    assert lake.read("tools").count_rows() == 2 * runs * rows
    finished = [r for r in lake.runs() if r.status == "finished"]
    assert len(finished) == 2 * runs
