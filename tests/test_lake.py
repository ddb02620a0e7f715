"""Versioning, snapshots, read-only views, validation and rejects, through ``Lake``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lance
import pyarrow as pa
import pytest
from factories import derived_rows, servers_table, tools_table

from lake import Lake, SchemaMismatchError, SnapshotError, TableNotFoundError, content_hash
from schemas import Reward, Tool


def test_every_write_gives_a_new_version_and_row_count(lake: Lake, sample_rows) -> None:
    tools = sample_rows[1]
    first = lake.append("tools", tools_table(tools[:10]))
    assert (first.version, first.rows, first.commit.rows_total) == (1, 10, 10)
    second = lake.append("tools", tools_table(tools[10:20]))
    assert (second.version, second.commit.rows_total) == (2, 20)
    third = lake.upsert("tools", tools_table(tools[15:]))
    assert (third.version, third.commit.rows_total) == (3, len(tools))
    assert lake.read("tools").count_rows() == len(tools)
    assert lake.read("tools", version=1).count_rows() == 10
    assert lake.read("tools", version=2).count_rows() == 20


def test_snapshot_read_returns_the_same_bytes_after_later_writes(lake: Lake, sample_rows) -> None:
    servers, tools = sample_rows
    lake.append("tool_servers", servers_table(servers))
    lake.append("tools", tools_table(tools[:12]))
    snapshot = lake.create_snapshot("before")
    pinned_hash = content_hash(lake.read("tools", snapshot="before").to_arrow())
    assert pinned_hash == next(p.content_hash for p in snapshot.tables if p.table == "tools")

    lake.append("tools", tools_table(tools[12:]))
    lake.upsert("tool_servers", servers_table(servers[:1]))
    assert lake.read("tools").count_rows() == len(tools)
    assert content_hash(lake.read("tools", snapshot="before").to_arrow()) == pinned_hash
    assert lake.read("tools", tag="snapshot-before").count_rows() == 12
    diff = {d.table: d for d in lake.diff_snapshots("before", lake.create_snapshot("after").name)}
    assert (diff["tools"].added, diff["tools"].removed) == (len(tools) - 12, 0)


def test_snapshots_are_immutable(lake: Lake, sample_rows) -> None:
    lake.append("tools", tools_table(sample_rows[1][:3]))
    lake.create_snapshot("s1")
    with pytest.raises(SnapshotError, match="immutable"):
        lake.create_snapshot("s1")
    with pytest.raises(SnapshotError, match="invalid"):
        lake.create_snapshot("bad name!")


def test_views_are_read_only_and_pinned(lake: Lake, sample_rows) -> None:
    lake.append("tools", tools_table(sample_rows[1][:3]))
    view = lake.read("tools")
    assert not hasattr(view, "append") and not hasattr(view, "upsert")
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.version = 7  # type: ignore[misc]
    lake.append("tools", tools_table(sample_rows[1][3:6]))
    assert view.count_rows() == 3
    assert view.to_polars().collect().height == 3


def test_reading_an_uncommitted_or_missing_version_fails_clearly(lake: Lake, sample_rows) -> None:
    with pytest.raises(TableNotFoundError, match="no committed data"):
        lake.read("tools")
    lake.append("tools", tools_table(sample_rows[1][:3]))
    with pytest.raises(TableNotFoundError, match="never committed"):
        lake.read("tools", version=9)


def test_malformed_rows_go_to_rejects_and_good_rows_land(lake: Lake, sample_rows) -> None:
    records = tools_table(sample_rows[1][:5]).to_pylist()
    records[1]["source_format"] = "yaml"
    records[3]["parameters"] = "{not json"
    result = lake.append("tools", pa.Table.from_pylist(records, schema=Tool.arrow_schema()))
    assert (result.rows, result.rejected) == (3, 2)
    assert lake.read("tools").count_rows() == 3
    rejects = lake.read("rejects").to_arrow().to_pylist()
    reasons = sorted(r["reason"].split(":")[0] for r in rejects)
    assert reasons == ["invalid_json", "invalid_value"]
    assert all(r["table"] == "tools" and r["run_id"] == result.run_id for r in rejects)


def test_rows_of_the_wrong_type_are_found_one_by_one(lake: Lake) -> None:
    good = Reward(
        target_table="trajectories",
        target_id="traj-" + "a" * 24,
        dimension="final_answer",
        score=1.0,
        status="ok",
        judge_model="rule",
        prompt_version="1",
    ).to_record()
    # As a JSON reader would give it: the score column holds text, one value not a number.
    wrong_type = {**good, "dimension": "conciseness", "score": "high"}
    table = pa.Table.from_pylist([{**good, "score": "1.0"}, wrong_type])
    result = lake.append("rewards", table)
    assert (result.rows, result.rejected) == (1, 1)
    reason = lake.read("rejects").to_arrow()["reason"][0].as_py()
    assert reason.startswith("invalid_type: score")


def test_a_failed_judgment_never_carries_a_score(lake: Lake) -> None:
    base = dict(
        target_table="trajectories",
        target_id="traj-" + "a" * 24,
        judge_model="llm",
        prompt_version="1",
    )
    rows = [
        Reward(**base, dimension="a", score=None, status="failed", error="timeout").to_record(),
        {**Reward(**base, dimension="b", score=None, status="failed").to_record(), "score": 1.0},
        {**Reward(**base, dimension="c", score=0.5, status="ok").to_record(), "score": None},
    ]
    result = lake.append("rewards", pa.Table.from_pylist(rows, schema=Reward.arrow_schema()))
    assert (result.rows, result.rejected) == (1, 2)


def test_unknown_columns_are_an_error_not_a_silent_drop(lake: Lake, sample_rows) -> None:
    table = tools_table(sample_rows[1][:2]).append_column("extra", pa.array([1, 2]))
    with pytest.raises(SchemaMismatchError, match="extra"):
        lake.append("tools", table)


def test_column_order_cannot_corrupt_data(lake: Lake, sample_rows) -> None:
    """Lance maps columns by field id: fragments in another column order read back as garbage
    unless the writer reorders by name. Write in reversed order, read back exactly."""
    table = tools_table(sample_rows[1][:6])
    reversed_table = table.select(list(reversed(table.column_names)))
    lake.append("tools", table.slice(0, 3))
    lake.append("tools", reversed_table.slice(3, 3))
    back = lake.read("tools").to_arrow().sort_by("id")
    assert back.drop_columns(["run_id"]).equals(table.sort_by("id").drop_columns(["run_id"]))
    raw = lance.dataset(lake.store.table_uri("tools")).to_table().sort_by("id")
    assert raw["name"].to_pylist() == back["name"].to_pylist()


def test_ids_are_content_hashes_so_reingest_is_the_same_row(lake: Lake, sample_rows) -> None:
    tools = sample_rows[1]
    lake.upsert("tools", tools_table(tools))
    lake.upsert("tools", tools_table(tools))
    assert lake.read("tools").count_rows() == len(tools)
    duplicate = pa.concat_tables([tools_table(tools[:2]), tools_table(tools[:1])])
    result = lake.append("tools", duplicate)
    assert result.report.duplicates_skipped == 1


def test_derived_rows_store_nested_messages(lake: Lake, sample_rows) -> None:
    trajectory = derived_rows(sample_rows[1])[2]
    lake.append("trajectories", type(trajectory).to_arrow([trajectory]))
    row = lake.read("trajectories").row(trajectory.id)
    assert row is not None
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert row["messages"][1]["tool_calls"][0]["name"] == sample_rows[1][0].name
    frame = lake.query("SELECT n_tool_calls, status FROM trajectories")
    assert frame.to_dicts() == [{"n_tool_calls": 1, "status": "completed"}]


def test_old_schema_tables_are_upcast_on_read_and_migrated(lake: Lake, monkeypatch) -> None:
    from test_schemas import ServerV1, ServerV2

    import schemas

    monkeypatch.setitem(schemas.DATA_TABLES, "tool_servers", ServerV1)
    old = lake.append("tool_servers", ServerV1.to_arrow([ServerV1(label="bank:Bank")]))
    monkeypatch.setitem(schemas.DATA_TABLES, "tool_servers", ServerV2)
    rows = lake.read("tool_servers").to_arrow().to_pylist()
    assert [(r["name"], r["title"], r["schema_version"]) for r in rows] == [("bank", "Bank", 2)]
    assert lake.read("tool_servers").take([0], columns=["title"]).to_pylist() == [{"title": "Bank"}]
    with pytest.raises(SchemaMismatchError, match="astra lake migrate tool_servers"):
        lake.append("tool_servers", ServerV2.to_arrow([ServerV2(name="shop", title="Shop")]))
    migrated = lake.migrate("tool_servers")
    assert migrated.version == old.version + 1
    assert lake.read("tool_servers").to_arrow()["run_id"].to_pylist() == [old.run_id]
    lake.append("tool_servers", ServerV2.to_arrow([ServerV2(name="shop", title="Shop")]))
    assert lake.read("tool_servers").count_rows() == 2
    assert lake.read("tool_servers", version=old.version).to_arrow()["title"].to_pylist() == [
        "Bank"
    ]


def test_fragments_written_elsewhere_commit_with_the_same_content_hash(
    lake: Lake, tmp_path, sample_rows
) -> None:
    """The path Spark executors use: validate and stamp rows, write fragments, commit once."""
    from lance.fragment import write_fragments

    from lake.validation import prepare_rows

    table = tools_table(sample_rows[1][:9])
    with lake.run("test.fragments", {"n": 9}) as run:
        fragments = []
        for start in (0, 4):  # two "partitions"
            part = prepare_rows(
                Tool, table.slice(start, 5 if start == 4 else 4), "exec", run.run_id
            )
            fragments += write_fragments(
                part.good, lake.store.table_uri("tools"), schema=part.good.schema
            )
        run.append_fragments("tools", fragments)
    via_fragments = run.result.commit_for("tools")
    other = Lake(tmp_path / "other").append("tools", table)
    assert via_fragments.rows_total == 9
    assert via_fragments.content_hash == other.commit.content_hash


def test_upserts_spill_to_staging_that_is_removed_after_commit_or_failure(
    lake: Lake, sample_rows
) -> None:
    tools = sample_rows[1]
    with lake.run("test.spill", {"n": 1}) as run:
        run.upsert("tools", tools_table(tools[:10]))
        run.upsert("tools", tools_table(tools[10:]))
        staging = Path(lake.uri) / "_astra" / "staging" / run.run_id
        assert staging.exists()
    assert lake.read("tools").count_rows() == len(tools)
    assert not staging.exists()
    with pytest.raises(RuntimeError), lake.run("test.spill", {"n": 2}) as failing:
        failing.upsert("tools", tools_table(tools[:3]))
        raise RuntimeError("the job crashed")
    assert not (Path(lake.uri) / "_astra" / "staging" / failing.run_id).exists()
    assert lake.read("tools").count_rows() == len(tools)
