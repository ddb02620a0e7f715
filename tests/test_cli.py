"""The ``astra`` command as users meet it: help everywhere, JSON for scripts, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from astra.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def astra(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a subprocess (as `astra` would), to see exit codes."""
    return subprocess.run(
        [sys.executable, "-m", "astra", *args], cwd=ROOT, capture_output=True, text=True
    )


def all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "astra")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_ingest_query_snapshot_and_lineage_as_json(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    ran = runner.invoke(app, ["run", "ingest-catalog", "--lake", lake, "--format", "json"])
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.output)["run"]["run_id"]

    tables = json.loads(runner.invoke(app, ["lake", "tables", "--lake", lake, "-f", "json"]).output)
    assert {t["table"]: t["rows"] for t in tables}["tools"] == 31

    query = ["lake", "query", "SELECT id, name FROM tools WHERE name = 'book_flight'"]
    rows = json.loads(runner.invoke(app, [*query, "--lake", lake, "-f", "json"]).output)
    assert [r["name"] for r in rows] == ["book_flight"]

    snap = runner.invoke(app, ["lake", "snapshot", "create", "s1", "--lake", lake, "-f", "json"])
    assert json.loads(snap.output)["name"] == "s1"

    walked = runner.invoke(app, ["lake", "lineage", rows[0]["id"], "--lake", lake, "-f", "json"])
    node = json.loads(walked.output)
    assert node["run_id"] == run_id and node["parents"][0]["table"] == "tool_servers"

    history = json.loads(
        runner.invoke(app, ["lake", "history", "--lake", lake, "-f", "json"]).output
    )
    assert [h["event"] for h in history][-1] == "SnapshotCreated"


def test_errors_are_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    missing = astra("lake", "show", "tools", "--lake", lake)
    assert missing.returncode == 2
    assert "no committed data yet" in missing.stderr and "Traceback" not in missing.stderr

    unknown = astra("run", "ingest-catalgo", "--lake", lake)
    assert unknown.returncode == 2 and "Did you mean 'ingest-catalog'" in unknown.stderr

    bad_param = astra("run", "ingest-catalog", "-p", "source=/nonexistent.json", "--lake", lake)
    assert bad_param.returncode == 2 and "does not exist" in bad_param.stderr

    bad_sql = astra("lake", "query", "SELEKT 1", "--lake", lake)
    assert bad_sql.returncode == 2 and "query failed" in bad_sql.stderr


def test_astra_run_gives_spark_jobs_a_session(tmp_path: Path) -> None:
    """`astra run` must hand Spark jobs a session factory, with --master honoured."""
    lake = str(tmp_path / "lake")
    assert astra("run", "ingest-catalog", "--lake", lake).returncode == 0
    graph = astra("run", "build-tool-graph", "--master", "local[1]", "--lake", lake, "-f", "json")
    assert graph.returncode == 0, graph.stderr
    result = json.loads(graph.stdout)["run"]
    commits = result["commits"]
    assert commits[0]["table"] == "tool_edges" and commits[0]["rows_written"] > 0
    # A Spark job replays too: `astra lake replay` hands it a session of its own.
    scratch = str(tmp_path / "scratch")
    replay = astra(
        "lake", "replay", result["run_id"], "--scratch", scratch, "--master", "local[1]",
        "--lake", lake, "-f", "json",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["matches"] is True


def test_a_stage_that_writes_nothing_stops_the_pipeline_and_says_why(tmp_path: Path) -> None:
    """Three tools that share nothing: the graph has no edges, so the pipeline stops there
    (exit 2, the reason on stderr, the stages that ran on stdout) unless --allow-empty."""
    lake = str(tmp_path / "lake")
    args = (
        "pipeline", "trajectories", "--source", str(ROOT / "tests/data/unlinked_catalog.json"),
        "--master", "local[1]", "--set", "spark.shuffle_partitions=1", "--lake", lake, "-f", "json",
    )  # fmt: skip
    stopped = astra(*args)
    assert stopped.returncode == 2, stopped.stderr
    assert "error: build-tool-graph wrote no tool_edges: " in stopped.stderr
    assert "pass --allow-empty to continue anyway" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    ran = json.loads(stopped.stdout)
    assert [r["stage"] for r in ran] == ["ingest-catalog", "build-tool-graph"]
    assert ran[0]["note"] == "" and ran[1]["note"].startswith("wrote no tool_edges: ")

    allowed = astra(*args, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    notes = {r["stage"]: r["note"] for r in json.loads(allowed.stdout)}
    assert list(notes)[-1] == "select-sft"
    # Later stages had no edges to work from: the graph stage is the one to blame.
    assert notes["build-tool-graph"] == ran[1]["note"] and notes["select-sft"] == ""

    runs = json.loads(runner.invoke(app, ["lake", "runs", "--lake", lake, "-f", "json"]).output)
    empty = {r["job"]: r["empty"] for r in runs}
    assert empty["build-tool-graph"].startswith("tool_edges: ") and empty["select-sft"] == ""


def test_astra_run_warns_when_a_job_wrote_nothing(tmp_path: Path) -> None:
    catalog = tmp_path / "toolless.json"
    server = {"server_info": {"name": "units", "description": "Converts units of mass."}}
    catalog.write_text(json.dumps({"servers": [{**server, "tools": []}]}))
    args = ["run", "ingest-catalog", "-p", f"source={catalog}", "--lake", str(tmp_path / "lake")]
    ran = runner.invoke(app, [*args, "-f", "json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["empty"]["tools"].startswith("nothing in its source")
    assert "warning: ingest-catalog wrote no tools: nothing in its source" in ran.stderr
