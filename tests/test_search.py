"""Search: the index job, full-text and semantic search, versioning with snapshots, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from astra.cli import app
from jobs.runner import run_job
from jobs.search import BuildSearchIndex, SearchIndex, SearchIndexMissing, SearchIndexParams
from lake import Lake, TableNotFoundError
from lake.errors import RunStateError
from schemas import Message, SearchDoc, Task, Tool, ToolCall, Trajectory
from schemas.search import EMBEDDING_DIMS

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

SERVER = "srv-000000000000000000000001"
TOOL_TEXTS = {
    "charter_zeppelin": "Charter a zeppelin airship for a sightseeing flight over the city.",
    "compute_payroll_tax": "Compute the payroll tax an employer owes for one pay period.",
    "list_invoices": "List the unpaid invoices of a customer account.",
    "get_soil_moisture": "Read the soil moisture sensor of one greenhouse bed.",
    "translate_text": "Translate a short text between two languages.",
}


def tool(name: str, description: str) -> Tool:
    return Tool(
        server_id=SERVER,
        name=name,
        description=description,
        parameters={"type": "object", "properties": {}},
        domain="test",
        source_format="openai",
    )


def trajectory(task: Task, called: str, answer: str) -> Trajectory:
    return Trajectory(
        task_id=task.id,
        tool_ids=[],
        messages=[
            Message(role="user", content=task.query),
            Message(role="assistant", tool_calls=[ToolCall(id="c1", name=called, arguments="{}")]),
            Message(role="tool", tool_call_id="c1", name=called, content='{"ok": true}'),
            Message(role="assistant", content=answer),
        ],
        agent_model="oracle",
        executor="offline_simulator",
        seed=0,
        n_turns=2,
        n_tool_calls=1,
        status="completed",
        final_answer=answer,
        parent_ids=[task.id],
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny lake with known texts, indexed once, and snapshotted as ``before``."""
    lake = Lake(tmp_path_factory.mktemp("search") / "lake")
    tools = [tool(n, d) for n, d in TOOL_TEXTS.items()]
    tasks = [
        Task(server_id=SERVER, query="How much payroll tax do we owe for March?"),
        Task(server_id=SERVER, query="Which invoices of ACME are still unpaid?"),
    ]
    trajectories = [
        trajectory(tasks[0], "compute_payroll_tax", "You owe 1,204 EUR of payroll tax."),
        trajectory(tasks[1], "list_invoices", "ACME has two unpaid invoices."),
    ]
    lake.append("tools", Tool.to_arrow(tools))
    lake.append("tasks", Task.to_arrow(tasks))
    lake.append("trajectories", Trajectory.to_arrow(trajectories))
    run_job(lake, BuildSearchIndex(SearchIndexParams()))
    lake.create_snapshot("before")
    return Path(lake.uri)


@pytest.fixture
def lake(built: Path, tmp_path: Path) -> Lake:
    """A private copy of the indexed lake (tests may write to it)."""
    shutil.copytree(built, tmp_path / "lake")
    return Lake(tmp_path / "lake")


def tool_id(name: str) -> str:
    return tool(name, TOOL_TEXTS[name]).id


def test_full_text_search_finds_the_planted_row_first(lake: Lake) -> None:
    index = SearchIndex.open(lake)
    hits = index.text("zeppelin airship")
    assert hits[0].source_id == tool_id("charter_zeppelin")
    assert [h.source_id for h in hits] == [tool_id("charter_zeppelin")]  # no other row has it
    assert "zeppelin" in hits[0].snippet and hits[0].score > 0

    payroll = index.text("payroll tax")
    assert {h.source_table for h in payroll} == {"tools", "tasks", "trajectories"}
    only_tasks = index.text("payroll tax", table="tasks")
    assert [h.source_table for h in only_tasks] == ["tasks"]
    # A trajectory is found by a tool it called, not only by its words.
    called = index.text("list_invoices", table="trajectories")
    assert (
        len(called) == 1
        and "tools called: list_invoices"
        in lake.read("search_docs").to_arrow(filter=f"id = '{called[0].doc_id}'")["text"][0].as_py()
    )


def test_semantic_search_ranks_a_paraphrase_above_unrelated_rows(lake: Lake) -> None:
    index = SearchIndex.open(lake)
    hits = index.similar("rent a blimp for an aerial tour", table="tools")
    ranked = [h.source_id for h in hits]
    assert ranked[0] == tool_id("charter_zeppelin")
    assert hits[0].score > hits[1].score
    assert ranked.index(tool_id("charter_zeppelin")) < ranked.index(tool_id("get_soil_moisture"))

    # By row id: the row's stored embedding, the row itself left out.
    by_id = index.similar(tool_id("compute_payroll_tax"))
    assert tool_id("compute_payroll_tax") not in [h.source_id for h in by_id]
    assert by_id[0].source_table in ("tasks", "trajectories")  # the payroll task and its run
    assert "payroll" in by_id[0].snippet.lower()


def test_index_is_committed_with_the_version_and_a_rerun_is_a_no_op(lake: Lake) -> None:
    view = lake.read("search_docs")
    kinds = {i["kind"]: i["columns"] for i in view.indexes()}
    assert kinds["Inverted"] == ["text"] and kinds["BTree"] == ["source_id"]
    assert "IVF_PQ" not in kinds  # 9 documents: flat search, and the run says so
    run = next(r for r in lake.runs() if r.started.job == "build-search-index")
    assert run.finished is not None
    assert run.finished.metrics["search"]["vector_search"] == "flat"
    assert run.finished.metrics["search"]["documents"] == {
        "tools": 5,
        "tasks": 2,
        "trajectories": 2,
    }
    # The version the rows were written at (before indexing) was never a committed version.
    with pytest.raises(TableNotFoundError):
        lake.read("search_docs", version=view.version - 1)
    again = run_job(lake, BuildSearchIndex(SearchIndexParams()))
    assert again.reused and lake.read("search_docs").version == view.version
    docs = lake.read("search_docs").to_arrow()
    assert all(
        p == [s]
        for p, s in zip(docs["parent_ids"].to_pylist(), docs["source_id"].to_pylist(), strict=True)
    )


def test_a_search_at_an_older_snapshot_does_not_see_later_rows(lake: Lake) -> None:
    quokka = tool("feed_quokka", "Feed the quokka at the zoo.")
    lake.append("tools", Tool.to_arrow([quokka]))
    stale = SearchIndex.open(lake)
    assert stale.stale(lake) and "tools" in stale.stale(lake)[0]
    assert stale.text("quokka") == []  # not indexed yet

    run_job(lake, BuildSearchIndex(SearchIndexParams()))
    latest = SearchIndex.open(lake)
    assert latest.stale(lake) == []
    assert [h.source_id for h in latest.text("quokka")] == [quokka.id]

    before = SearchIndex.open(lake, snapshot="before")
    assert before.version < latest.version
    assert before.text("quokka") == []
    assert all("quokka" not in h.snippet for h in before.similar("feed an animal at the zoo"))
    assert before.sources["tools"] < latest.sources["tools"]


def test_the_index_run_replays_to_the_same_content_hash(lake: Lake, tmp_path: Path) -> None:
    from jobs.replay import replay_run

    # Inputs at versions a scratch lake will not have (tools@2 there is tools@1).
    lake.append("tools", Tool.to_arrow([tool("feed_quokka", "Feed the quokka at the zoo.")]))
    result = run_job(lake, BuildSearchIndex(SearchIndexParams()))
    report = replay_run(lake, result.run.run_id, tmp_path / "scratch")
    assert report.matches, report.tables


def test_lancedb_sees_the_same_indexes(lake: Lake) -> None:
    import lancedb

    table = lancedb.connect(lake.uri).open_table(
        "search_docs", version=lake.read("search_docs").version
    )
    found = table.search("zeppelin", query_type="fts").limit(3).to_arrow()
    assert found["source_id"].to_pylist() == [tool_id("charter_zeppelin")]


def random_docs(n: int, seed: int = 0) -> tuple[pa.Table, list[str]]:
    """``n`` search docs with random unit embeddings; doc 1's is a near-twin of doc 0's."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, EMBEDDING_DIMS)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01 * rng.normal(size=EMBEDDING_DIMS).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"tool-{i:024x}" for i in range(n)]
    docs = pa.table(
        {
            "source_table": ["tools"] * n,
            "source_id": ids,
            "text": [f"document {i}" for i in range(n)],
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel(), pa.float32()), EMBEDDING_DIMS
            ),
            "embedder": ["random"] * n,
            "parent_ids": [[i] for i in ids],
        }
    )
    return docs, ids


IVF_PQ = {"metric": "cosine", "num_partitions": 1, "num_sub_vectors": 48}


def test_a_run_builds_a_vector_index_on_the_version_it_commits(tmp_path: Path) -> None:
    """Run.create_index with IVF_PQ (no model needed: random vectors, one planted twin)."""
    lake = Lake(tmp_path / "lake")
    docs, ids = random_docs(300)
    with lake.run("index-test") as run:
        with pytest.raises(RunStateError, match="write the table in this run first"):
            run.create_index("search_docs", "embedding", "IVF_PQ")
        run.replace("search_docs", docs)
        run.create_index("search_docs", "text", "FTS")
        run.create_index("search_docs", "embedding", "IVF_PQ", **IVF_PQ)
    commit = run.result.commit_for("search_docs")
    assert commit is not None and lake.state.versions["search_docs"] == commit.version
    assert run.result.metrics["indexes"]["search_docs"]["version"] == commit.version
    index = SearchIndex.open(lake)
    assert index.vector_indexed
    hits = index.similar(ids[0], limit=3)
    assert hits[0].source_id == ids[1] and ids[0] not in [h.source_id for h in hits]
    assert SearchDoc.arrow_schema().field("embedding").type == pa.list_(
        pa.float32(), EMBEDDING_DIMS
    )


def test_a_run_that_dies_while_indexing_leaves_nothing_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lance

    lake = Lake(tmp_path / "lake")
    first, _ = random_docs(300, seed=1)
    with lake.run("index-test", {"n": 1}) as run:
        run.replace("search_docs", first)
        run.create_index("search_docs", "text", "FTS")
    good = lake.read("search_docs").version

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full while indexing")

    monkeypatch.setattr(lance.LanceDataset, "create_index", crash)
    second, _ = random_docs(300, seed=2)
    with pytest.raises(OSError, match="disk full"), lake.run("index-test", {"n": 2}) as run:
        run.replace("search_docs", second)
        run.create_index("search_docs", "embedding", "IVF_PQ", **IVF_PQ)
    # The new rows were committed to Lance, but never to the log: readers still see `good`.
    assert lake.read("search_docs").version == good
    assert lake.read("search_docs").to_arrow()["text"].to_pylist() == first["text"].to_pylist()
    monkeypatch.undo()
    with lake.run("index-test", {"n": 3}) as run:
        run.replace("search_docs", second)
        run.create_index("search_docs", "embedding", "IVF_PQ", **IVF_PQ)
    discarded = [e for _, e in lake.events() if type(e).__name__ == "UncommittedVersionsDiscarded"]
    assert len(discarded) == 1 and discarded[0].table == "search_docs"
    assert SearchIndex.open(lake).vector_indexed


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    with pytest.raises(SearchIndexMissing, match="build-search-index"):
        SearchIndex.open(lake)
    result = subprocess.run(
        [sys.executable, "-m", "astra", "search", "text", "flight", "--lake", str(lake.uri)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "run `astra run build-search-index` first" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_search_as_json(lake: Lake) -> None:
    args = ["--lake", lake.uri, "--format", "json"]
    text = runner.invoke(app, ["search", "text", "zeppelin", *args])
    assert text.exit_code == 0, text.output
    found = json.loads(text.stdout)
    assert found["hits"][0]["row_id"] == tool_id("charter_zeppelin")
    assert found["hits"][0]["table"] == "tools" and found["index"]["vector_index"] is False
    assert found["index"]["sources"].keys() == {"tools", "tasks", "trajectories"}

    similar = runner.invoke(
        app, ["search", "similar", tool_id("list_invoices"), "--table", "tasks", *args]
    )
    assert similar.exit_code == 0, similar.output
    hits = json.loads(similar.stdout)["hits"]
    assert hits[0]["snippet"] == "Which invoices of ACME are still unpaid?"
    assert {h["table"] for h in hits} == {"tasks"}

    at_snapshot = runner.invoke(app, ["search", "text", "zeppelin", "--snapshot", "before", *args])
    assert json.loads(at_snapshot.stdout)["snapshot"] == "before"

    unknown = runner.invoke(app, ["search", "similar", "tool-" + "0" * 24, *args])
    assert unknown.exit_code == 2 and "not in the search index" in unknown.output
