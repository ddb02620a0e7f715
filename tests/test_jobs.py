"""The job framework through its first job, catalog ingest: rejects, idempotency, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.ingest import CatalogError, IngestCatalog, IngestParams
from jobs.params import ParamsError, parse_params
from jobs.replay import replay_run
from jobs.runner import run_job
from lake import Lake

SAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "samples"


def ingest(lake: Lake, source: str = "builtin:sample", seed: int = 0):
    return run_job(lake, IngestCatalog(IngestParams(source=source)), seed=seed)


def test_ingest_writes_every_server_and_tool(lake: Lake, sample_catalog: dict) -> None:
    result = ingest(lake)
    n_tools = sum(len(s["tools"]) for s in sample_catalog["servers"])
    assert result.kept == {"tool_servers": len(sample_catalog["servers"]), "tools": n_tools}
    assert lake.read("tools").count_rows() == n_tools
    tools = lake.read("tools").to_arrow().to_pylist()
    server_ids = set(lake.read("tool_servers").to_arrow()["id"].to_pylist())
    assert all(t["parent_ids"] == [t["server_id"]] and t["server_id"] in server_ids for t in tools)


def test_unconvertible_entries_are_quarantined_with_reasons(lake: Lake) -> None:
    result = ingest(lake, str(SAMPLES / "tool_catalog_with_errors.json"))
    assert result.kept == {"tool_servers": 1, "tools": 4}
    rejects = lake.read("rejects").to_arrow().to_pylist()
    reasons = sorted(r["reason"] for r in rejects)
    assert reasons == [
        "unconvertible_server: server_info.name is missing",
        "unconvertible_tool: convert_speed: parameters.value has unknown type 'velocity'",
        "unconvertible_tool: convert_volume: parameters must have type 'object'",
    ]
    assert result.dropped == {"unconvertible_tool": 2, "unconvertible_server": 1}


def test_usable_entries_with_flaws_are_kept_and_marked(lake: Lake) -> None:
    ingest(lake, str(SAMPLES / "tool_catalog_with_errors.json"))
    tools = {t["name"]: t for t in lake.read("tools").to_arrow().to_pylist()}
    assert tools["convert_mass"]["original_name"] == "convert mass"  # aliased name
    temperature = json.loads(tools["convert_temperature"]["parameters"])
    assert temperature["required"] == ["value"]  # 'scale' was required but never defined
    assert tools["list_units"]["description"] == "tbd"
    assert tools["list_units"]["description_quality"] == "short"
    assert tools["convert_length"]["description_quality"] == "ok"
    assert tools["convert_length"]["original_name"] is None


def test_identical_rerun_is_a_noop(lake: Lake) -> None:
    first = ingest(lake)
    log_position = lake.state.position
    second = ingest(lake)
    assert second.reused and second.run.run_id == first.run.run_id
    assert second.run.commits == tuple(c for c in first.run.commits)
    assert lake.state.position == log_position
    third = ingest(lake, seed=1)
    assert not third.reused


def test_changed_source_file_is_a_new_run(lake: Lake, tmp_path: Path, sample_catalog: dict) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(sample_catalog))
    first = ingest(lake, str(path))
    path.write_text(json.dumps({**sample_catalog, "servers": sample_catalog["servers"][:2]}))
    second = ingest(lake, str(path))
    assert not second.reused and second.run.run_id != first.run.run_id


def test_replay_reproduces_content_hashes(lake: Lake, tmp_path: Path) -> None:
    result = ingest(lake, str(SAMPLES / "tool_catalog_with_errors.json"))
    ingest(lake)
    report = replay_run(lake, result.run.run_id, tmp_path / "scratch")
    assert report.matches
    assert {t.table for t in report.tables} == {"tool_servers", "tools"}


def test_bad_catalog_file_is_a_clear_error(lake: Lake, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"servers": [')
    with pytest.raises(CatalogError, match="not valid JSON"):
        ingest(lake, str(broken))
    with pytest.raises(CatalogError, match="does not exist"):
        ingest(lake, str(tmp_path / "missing.json"))
    failed = [r for r in lake.runs() if r.status == "failed"]
    assert len(failed) == 1 and failed[0].failed.error_type == "CatalogError"


def test_params_parser_names_the_rule() -> None:
    assert parse_params(IngestParams, ["source=x.json"]).source == "x.json"
    with pytest.raises(ParamsError, match="unknown param 'sauce'"):
        parse_params(IngestParams, ["sauce=x"])
    with pytest.raises(ParamsError, match="key=value"):
        parse_params(IngestParams, ["source"])
