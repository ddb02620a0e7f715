"""Lineage walks parent_ids from a derived row up to the source tool schemas."""

from __future__ import annotations

from factories import derived_rows

from jobs.ingest import IngestCatalog, IngestParams
from jobs.runner import run_job
from lake import Lake
from lake.lineage import lineage
from schemas import Chain, Task, Tool, Trajectory


def test_lineage_from_a_trajectory_reaches_its_tools_and_server(lake: Lake) -> None:
    ingest = run_job(lake, IngestCatalog(IngestParams()))
    tools = [Tool.from_record(r) for r in lake.read("tools").to_arrow().to_pylist()]
    tools = sorted(tools, key=lambda t: (t.server_id, t.name))
    chain, task, trajectory = derived_rows(tools)
    with lake.run("test.derive", {"n": 1}) as run:
        run.append("chains", Chain.to_arrow([chain]))
        run.append("tasks", Task.to_arrow([task]))
        run.append("trajectories", Trajectory.to_arrow([trajectory]))

    root = lineage(lake, trajectory.id)
    walked = root.walk()
    tables = [n.table for n in walked]
    assert tables[:3] == ["trajectories", "tasks", "chains"]
    assert {tools[0].id, tools[1].id} <= {n.row_id for n in walked}
    assert tools[0].server_id in {n.row_id for n in walked}
    assert all(n.found for n in walked)
    source_runs = {n.run_id for n in walked if n.table in ("tools", "tool_servers")}
    assert source_runs == {ingest.run.run_id}
    assert {n.job for n in walked if n.table == "chains"} == {"test.derive"}


def test_a_missing_parent_is_marked_not_skipped(lake: Lake, sample_rows) -> None:
    _, tools = sample_rows
    chain, _, _ = derived_rows(tools)
    lake.append("chains", Chain.to_arrow([chain]))
    root = lineage(lake, chain.id)
    assert [p.found for p in root.parents] == [False, False]
    assert [p.table for p in root.parents] == ["tools", "tools"]
