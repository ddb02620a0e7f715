"""The trajectory pipeline end to end on the shipped catalog, on Spark (local[2])."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from astra.pipeline import StageOutcome, run_trajectory_pipeline
from jobs.config import AstraConfig, load_config
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from lake.lineage import lineage
from schemas import Reward

SMALL = {
    "spark.master": "local[2]",
    "spark.shuffle_partitions": "2",
    "synthesis.chains_per_server": "3",
    "synthesis.queries_per_chain": "1",
    "synthesis.augmentations": "diverse",
    "synthesis.failure_rate": "0.0",
}


@pytest.fixture(scope="module")
def factory() -> Iterator[SparkSessionFactory]:
    spark = SparkSessionFactory(
        SparkConfig(master="local[2]", python=sys.executable, shuffle_partitions=2)
    )
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def config() -> AstraConfig:
    return load_config(None, SMALL)


PROGRESS: list[tuple[str, int, int]] = []


@pytest.fixture(scope="module")
def first(
    tmp_path_factory: pytest.TempPathFactory, config: AstraConfig, factory: SparkSessionFactory
) -> tuple[Lake, list[StageOutcome]]:
    lake = Lake(tmp_path_factory.mktemp("pipeline") / "lake")
    outcomes = run_trajectory_pipeline(
        lake,
        config,
        "builtin:sample",
        factory=factory,
        count_progress=lambda description, done, total: PROGRESS.append((description, done, total)),
    )
    return lake, outcomes


def test_progress_reports_spark_tasks_and_rows_written(
    first: tuple[Lake, list[StageOutcome]],
) -> None:
    """Long runs show their Spark stages' task counts and each write's row count."""
    lake, _ = first
    written = {d: done for d, done, _ in PROGRESS if d.endswith(": rows written")}
    for table in ("tool_edges", "chains", "tasks", "trajectories", "rewards", "sft_examples"):
        assert written[f"write {table}: rows written"] == lake.read(table).count_rows()
    final: dict[str, tuple[int, int]] = {}
    for description, done, total in PROGRESS:
        if ": stage " in description:
            final[description] = (done, total)
    assert final and all(done == total > 0 for done, total in final.values())


def test_every_stage_writes_rows(first: tuple[Lake, list[StageOutcome]]) -> None:
    lake, outcomes = first
    stages = [o.stage for o in outcomes]
    assert stages == [
        "ingest-catalog",
        "build-tool-graph",
        "sample-chains",
        "generate-tasks",
        "generate-trajectories",
        "score-trajectories",
        "select-sft",
    ]
    counts = {info.table: info.rows for info in lake.tables()}
    for table in ("tool_edges", "chains", "tasks", "trajectories", "rewards", "sft_examples"):
        assert counts[table] > 0, table
    assert counts["chains"] <= 5 * 3
    # One original plus one 'diverse' augmentation per chain query, all passing the rubric.
    assert counts["tasks"] == counts["trajectories"]


def test_gold_oracle_trajectories_score_one_on_every_rule(
    first: tuple[Lake, list[StageOutcome]],
) -> None:
    """With no injected failures the oracle follows each chain: every rule reward is 1.0."""
    lake, _ = first
    rewards = [Reward.from_record(r) for r in lake.read("rewards").to_arrow().to_pylist()]
    rule = [r for r in rewards if r.judge_model == "rule"]
    assert rule and all(r.status == "ok" and r.score == 1.0 for r in rule)
    judged = [r for r in rewards if r.judge_model != "rule"]
    assert judged and all(r.status == "missing" and r.score is None for r in judged)
    assert lake.read("sft_examples").count_rows() == lake.read("trajectories").count_rows()


def test_sft_example_lineage_reaches_its_tools(first: tuple[Lake, list[StageOutcome]]) -> None:
    lake, _ = first
    example_id = lake.read("sft_examples").to_arrow(columns=["id"])["id"][0].as_py()
    tables = {node.table for node in lineage(lake, example_id).walk() if node.found}
    assert {"sft_examples", "trajectories", "tasks", "chains", "tools", "tool_servers"} <= tables


def test_rerun_is_a_noop_and_a_fresh_lake_gives_the_same_hashes(
    first: tuple[Lake, list[StageOutcome]],
    config: AstraConfig,
    factory: SparkSessionFactory,
    tmp_path: Path,
) -> None:
    lake, outcomes = first
    again = run_trajectory_pipeline(lake, config, "builtin:sample", factory=factory)
    assert all(o.result.reused for o in again)
    fresh = run_trajectory_pipeline(Lake(tmp_path / "b"), config, "builtin:sample", factory=factory)
    for one, two in zip(outcomes, fresh, strict=True):
        hashes_one = {c.table: c.content_hash for c in one.result.run.commits}
        hashes_two = {c.table: c.content_hash for c in two.result.run.commits}
        assert hashes_one == hashes_two, one.stage


def test_chains_without_a_passing_verdict_get_no_tasks(
    first: tuple[Lake, list[StageOutcome]], factory: SparkSessionFactory
) -> None:
    """A verdict that failed or could not be made (an LLM judge that errored) is not a pass."""
    from jobs.runner import run_job
    from jobs.trajectories import GenerateTasks, TaskParams
    from schemas import Chain, Verdict

    lake, _ = first
    chains = [Chain.from_record(r) for r in lake.read("chains").to_arrow().to_pylist()]
    unsure = chains[0].model_copy(
        update={"verdicts": [*chains[0].verdicts, Verdict(verifier="llm_vote", passed=None)]}
    )
    lake.upsert("chains", Chain.to_arrow([unsure]))
    params = TaskParams(queries_per_chain=1, augmentations=())
    result = run_job(lake, GenerateTasks(params), spark_factory=factory)
    assert result.dropped.get("chain_not_verified") == 1
    tasks = lake.read("tasks")
    assert tasks.version == result.run.commit_for("tasks").version
    assert tasks.count_rows(filter=f"chain_id = '{unsure.id}'") == 0
    assert tasks.count_rows() == result.kept["tasks"]


def test_sft_set_exports_as_openai_jsonl_and_a_hf_dataset(
    first: tuple[Lake, list[StageOutcome]], tmp_path: Path
) -> None:
    import json

    from datasets import load_from_disk

    from jobs.export import export_hf, export_jsonl, sft_rows

    lake, _ = first
    rows = sft_rows(lake, None, "all")
    assert len(rows) == lake.read("sft_examples").count_rows()
    path = export_jsonl(rows, tmp_path / "sft.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in lines] == [r["id"] for r in rows]
    for row in lines:
        assert row["messages"][0]["role"] == "system" and row["tools"]
        calls = {}
        for message in row["messages"]:
            for call in message.get("tool_calls") or []:
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                calls[call["id"]] = call
            if message["role"] == "tool":
                assert message["tool_call_id"] in calls
    dataset = load_from_disk(str(export_hf(rows, tmp_path / "hf")))
    assert dataset.num_rows == len(rows)
    assert json.loads(dataset[0]["tools"]) == rows[0]["tools"]
