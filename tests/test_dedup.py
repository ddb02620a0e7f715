"""Dedup and decontamination: planted clusters with known members at every level, found exactly;
distinct rows kept; decisions as events; history keeps what curation dropped; reruns no-ops."""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.dedup.benchmarks import load_items
from jobs.dedup.jobs import CURATED_TABLES, NearParams
from jobs.dedup.minhash import jaccard, permutations, shingles, signatures
from jobs.dedup.normalize import canonical_code, normalize, trajectory_text
from jobs.dedup.pipeline import dedup_jobs
from jobs.runner import run_jobs
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from schemas import (
    DedupCluster,
    Environment,
    EnvTool,
    Message,
    QATrace,
    Reward,
    SFTExample,
    Task,
    ToolCall,
    Trajectory,
)
from schemas.events import RowsDeduplicated

SERVER = "srv-0123456789abcdef01234567"

EXACT = [
    "Book a table for two at Luigi's on Friday at 8pm.",
    "book a table for two at luigi's on friday at 8pm",
    "  BOOK a table, for two, at Luigi's on Friday at 8pm!! ",
]
NEAR_BASE = (
    "Please find me the cheapest direct flight from Berlin to Lisbon departing on the morning "
    "of June 3rd and book a window seat for one adult passenger travelling with hand luggage"
)
NEAR = [
    NEAR_BASE,
    NEAR_BASE.replace("cheapest", "fastest"),
    NEAR_BASE.replace(" with hand luggage", ""),
]
SEMANTIC = [
    "What will the weather be like in Paris tomorrow?",
    "Tell me the weather forecast for Paris for tomorrow.",
]
DISTINCT = [
    "Convert 250 US dollars into euros at today's rate.",
    "List every open support ticket for customer account 4471.",
    "Find vegetarian restaurants near the Louvre that are open after 10pm.",
    "Send an email to my manager saying I will be late to the standup.",
    "How many unread messages do I have in my inbox?",
    "Cancel my gym membership renewal for next month.",
]
BFCL_PROMPT = "Find the area of a triangle with a base of 10 units and height of 5 units."

TOOL_A = '''
RATES = {"EUR": 0.92, "GBP": 0.79}

def convert(amount, currency):
    """Convert US dollars."""
    rate = RATES[currency]
    total = amount * rate
    return round(total, 2)
'''
TOOL_B = """
TABLE = {"EUR": 0.92, "GBP": 0.79}

def convert(value, code):
    # renamed everything local
    factor = TABLE[code]
    result = value * factor
    return round(result, 2)
"""
TOOL_C = TOOL_A.replace("amount * rate", "amount / rate")


def task(query: str) -> Task:
    return Task(server_id=SERVER, query=query)


def trajectory(t: Task, arguments: str = '{"q": 1, "unit": "C"}', seed: int = 0) -> Trajectory:
    return Trajectory(
        task_id=t.id,
        tool_ids=[],
        messages=[
            Message(role="user", content=t.query),
            Message(
                role="assistant", tool_calls=[ToolCall(id="c1", name="look", arguments=arguments)]
            ),
            Message(role="tool", tool_call_id="c1", name="look", content=f'{{"seed": {seed}}}'),
            Message(role="assistant", content="Done."),
        ],
        agent_model="offline@1",
        executor="offline_simulator",
        seed=seed,
        n_turns=2,
        n_tool_calls=1,
        status="completed",
        final_answer="Done.",
        parent_ids=[t.id],
    )


def env_tool(code: str) -> EnvTool:
    return EnvTool(
        name="convert",
        description="Convert US dollars.",
        parameters={"type": "object", "properties": {}},
        code=code,
        code_digest=str(abs(hash(code))),
        verified=True,
    )


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSessionFactory]:
    factory = SparkSessionFactory(
        SparkConfig(master="local[1]", python=sys.executable, shuffle_partitions=2)
    )
    yield factory
    factory.stop()


class Planted:
    """The planted rows, by role."""

    def __init__(self) -> None:
        self.exact = [task(q) for q in EXACT]
        self.near = [task(q) for q in NEAR]
        self.semantic = [task(q) for q in SEMANTIC]
        self.distinct = [task(q) for q in DISTINCT]
        self.bfcl = task(BFCL_PROMPT)
        self.tasks = [*self.exact, *self.near, *self.semantic, *self.distinct, self.bfcl]
        self.trajectories = [trajectory(t) for t in self.tasks]
        # Two runs of one distinct task: the same calls (argument order and spacing differ).
        self.copy = trajectory(self.distinct[0], '{"unit":"C",  "q":1}', seed=1)
        self.trajectories.append(self.copy)
        self.rewards = [
            Reward(
                target_id=tr.id,
                target_table="trajectories",
                prompt_version="rule@1",
                dimension="tool_call_success",
                score=1.0,
                status="ok",
                judge_model="rule",
                parent_ids=[tr.id],
            )
            for tr in self.trajectories
        ]
        self.tools = [env_tool(TOOL_A), env_tool(TOOL_B), env_tool(TOOL_C)]


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture(scope="module")
def curated(
    planted: Planted, spark: SparkSessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Lake, list]:
    lake = Lake(tmp_path_factory.mktemp("dedup") / "lake")
    lake.append("tasks", Task.to_arrow(planted.tasks))
    lake.append("trajectories", Trajectory.to_arrow(planted.trajectories))
    lake.append("rewards", Reward.to_arrow(planted.rewards))
    lake.append("env_tools", EnvTool.to_arrow(planted.tools))
    for model in (SFTExample, QATrace, Environment):
        lake.append(model.TABLE, model.to_arrow([]))
    lake.create_snapshot("raw")
    jobs = dedup_jobs(params={"semantic": {"threshold": 0.8}})
    outcomes = run_jobs(lake, jobs, spark_factory=spark)
    return lake, outcomes


def clusters(lake: Lake, level: str, table: str) -> list[list[str]]:
    rows = lake.read("dedup_clusters").to_arrow().to_pylist()
    return sorted(r["members"] for r in rows if r["level"] == level and r["source_table"] == table)


def ids(rows: list) -> list[str]:
    return sorted(r.id for r in rows)


def test_every_level_finds_exactly_the_planted_clusters(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    lake, _ = curated
    assert clusters(lake, "exact", "tasks") == [ids(planted.exact)]
    assert clusters(lake, "near", "tasks") == [ids(planted.near)]
    assert clusters(lake, "semantic", "tasks") == [ids(planted.semantic)]
    # The runs of the exact copies are copies too; so are two runs of one distinct task.
    of_exact = [tr.id for tr in planted.trajectories[: len(EXACT)]]
    twice = [planted.copy.id, planted.trajectories[len(EXACT) + len(NEAR) + len(SEMANTIC)].id]
    assert clusters(lake, "exact", "trajectories") == sorted([sorted(of_exact), sorted(twice)])
    assert clusters(lake, "exact", "env_tools") == [ids(planted.tools[:2])]
    # The runs of the near copies are near copies (their text is mostly the query).
    of_near = sorted(tr.id for tr in planted.trajectories[len(EXACT) : len(EXACT) + len(NEAR)])
    assert clusters(lake, "near", "trajectories") == [of_near]


def test_representative_is_the_smallest_id_and_similarity_is_recorded(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    lake, _ = curated
    rows = [DedupCluster.from_record(r) for r in lake.read("dedup_clusters").to_arrow().to_pylist()]
    near = next(r for r in rows if r.level == "near")
    assert near.representative == min(ids(planted.near))
    assert 0.8 <= near.similarity < 1.0
    exact = next(r for r in rows if r.level == "exact" and r.source_table == "tasks")
    assert exact.similarity == 1.0
    assert exact.key is not None and exact.size == 3


def test_decontamination_finds_the_planted_bfcl_prompt_and_records_the_item(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    lake, _ = curated
    rows = lake.read("dedup_clusters").to_arrow().to_pylist()
    found = [r for r in rows if r["level"] == "contamination"]
    expected = next(i for i in load_items() if i.text == BFCL_PROMPT)
    bfcl_trajectory = next(tr for tr in planted.trajectories if tr.task_id == planted.bfcl.id)
    assert sorted(r["members"][0] for r in found) == sorted([planted.bfcl.id, bfcl_trajectory.id])
    assert {r["benchmark"] for r in found} == {"bfcl"}
    assert {r["benchmark_item"] for r in found} == {expected.item_id}
    assert all(r["similarity"] == 1.0 and r["representative"] is None for r in found)


def test_curated_tables_keep_representatives_and_distinct_rows_only(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    lake, _ = curated
    kept = set(lake.read("tasks").to_arrow()["id"].to_pylist())
    expected = {
        min(ids(planted.exact)),
        min(ids(planted.near)),
        min(ids(planted.semantic)),
        *ids(planted.distinct),
    }
    assert kept == expected
    # Trajectories follow their tasks; the duplicate run of a distinct task goes too.
    kept_trajectories = lake.read("trajectories").to_arrow().to_pylist()
    assert {t["task_id"] for t in kept_trajectories} == expected
    assert len(kept_trajectories) == len(expected)
    rewards = set(lake.read("rewards").to_arrow()["target_id"].to_pylist())
    assert rewards == {t["id"] for t in kept_trajectories}
    tools = set(lake.read("env_tools").to_arrow()["id"].to_pylist())
    assert tools == {min(ids(planted.tools[:2])), planted.tools[2].id}


def test_decisions_are_events_and_history_keeps_the_dropped_rows(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    lake, _ = curated
    decided = [e for _, e in lake.events() if isinstance(e, RowsDeduplicated)]
    dropped_tasks = {i for e in decided if e.table == "tasks" for i in e.dropped}
    assert dropped_tasks == {t.id for t in planted.tasks} - set(
        lake.read("tasks").to_arrow()["id"].to_pylist()
    )
    reasons: dict[str, int] = {}
    for event in decided:
        if event.table == "tasks":
            for reason, n in event.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
    assert reasons == {"exact": 2, "near": 2, "semantic": 1, "contamination": 1}
    assert any(e.table == "trajectories" and e.reasons.get("parent_dropped") for e in decided)
    raw = lake.read("tasks", snapshot="raw").to_arrow()
    assert sorted(raw["id"].to_pylist()) == ids(planted.tasks)


def test_rerun_changes_nothing_then_is_reused(
    curated: tuple[Lake, list], spark: SparkSessionFactory
) -> None:
    lake, _ = curated
    before = {t.table: t.version for t in lake.tables()}
    jobs = dedup_jobs(params={"semantic": {"threshold": 0.8}})
    again = run_jobs(lake, jobs, spark_factory=spark)
    assert {t.table: t.version for t in lake.tables()} == before
    assert all(not c.rows_written for o in again for c in o.result.run.commits)
    third = run_jobs(lake, dedup_jobs(params={"semantic": {"threshold": 0.8}}), spark_factory=spark)
    assert all(o.result.reused for o in third)


def test_curate_copy_of_history_survives_in_a_fresh_lake_read(
    curated: tuple[Lake, list], tmp_path: Path
) -> None:
    lake, _ = curated
    copy = tmp_path / "copy"
    shutil.copytree(lake.uri, copy)
    reopened = Lake(copy)
    assert set(CURATED_TABLES) <= {t.table for t in reopened.tables() if t.version is not None}
    assert reopened.read("tasks").count_rows() == lake.read("tasks").count_rows()


# -- units --------------------------------------------------------------------------------------


def test_normalize_equals_its_plain_definition_on_hostile_whitespace_and_unicode() -> None:
    # The fast path (NFKC on non-ASCII rows only, one regex for whitespace) must give what
    # the plain chain gives: NFKC, lower case, punctuation runs to spaces, \s+ to one space.
    import polars as pl

    texts = [
        "  Hello,\tWORLD!! ",
        "\uff46\uff55\uff4c\uff4c\u3000\uff57\uff49\uff44\uff54\uff48\u00a0x",
        "a\n\n b\r\n\u2003c",
        "caf\u00e9 vs cafe\u0301",
        "\u2460 \ufb01 \u00bd",
        "",
        " \t ",
        "tab\tonly",
        None,
    ]
    plain = (
        pl.Series(texts, dtype=pl.String)
        .fill_null("")
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    assert normalize(texts).to_pylist() == plain.to_list()


def test_code_with_renamed_variables_collides_and_changed_code_does_not() -> None:
    assert canonical_code(TOOL_A) == canonical_code(TOOL_B)
    assert canonical_code(TOOL_A) != canonical_code(TOOL_C)
    shadow = "def f(x):\n    len = 3\n    return len + x\n"
    builtin = "def f(y):\n    return len(y)\n"
    assert canonical_code(shadow) != canonical_code(builtin)


def test_trajectory_key_ignores_argument_order_but_not_values() -> None:
    t = task("Look something up.")
    a, b = trajectory(t), trajectory(t, '{"unit": "C","q":1}')
    c = trajectory(t, '{"q": 2, "unit": "C"}')
    text = [trajectory_text(x.model_dump()["messages"]) for x in (a, b, c)]
    assert text[0] == text[1] != text[2]


def test_shingle_jaccard_matches_a_direct_count() -> None:
    texts = normalize([NEAR[0], NEAR[1]])
    sets = shingles(texts, ngram=2)
    words = [s.split() for s in texts.to_pylist()]
    grams = [set(itertools.pairwise(w)) for w in words]
    expected = len(grams[0] & grams[1]) / len(grams[0] | grams[1])
    assert jaccard(sets.of(0), sets.of(1)) == pytest.approx(expected)


@pytest.mark.parametrize("block_values", [1 << 20, 32 * 4])
def test_batch_signatures_equal_a_per_row_loop(
    block_values: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Texts of different lengths, an empty one and one shorter than the n-gram: the batch
    # (one shingle x permutation array, minima by reduceat in blocks) equals a plain loop,
    # also when blocks hold 4 shingles and most texts are longer than one.
    from jobs.dedup import minhash

    monkeypatch.setattr(minhash, "_CHUNK_VALUES", block_values)
    texts = normalize([NEAR[0], NEAR[1], "", "single", *EXACT[:2]])
    sets = shingles(texts, ngram=2)
    a, b = permutations(32, seed=7)
    got = signatures(sets, 32, seed=7)
    mask = (1 << 64) - 1
    for row in range(len(texts)):
        for p in range(32):
            values = [
                ((int(a[p]) * int(h) + int(b[p])) & mask) >> 32 for h in sets.of(row).tolist()
            ]
            assert int(got[row, p]) == min(values, default=(1 << 32) - 1)
    assert (got[2] == (1 << 32) - 1).all() and sets.sizes[3] == 1


def test_near_edges_across_fragments_are_exactly_the_pairs_above_the_threshold(
    spark: SparkSessionFactory, tmp_path: Path
) -> None:
    # Near copies (one word of 30 replaced: bigram Jaccard 27/31) appended in other fragments
    # than their originals, in two tables of one plan: every pair found has the exact
    # Jaccard reported and is above the threshold, and every planted copy is found.
    import random

    from jobs.dedup.minhash import optimal_bands
    from jobs.dedup.near import MinHashSettings, near_edges

    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(400)]
    originals = [" ".join(rng.choice(vocabulary) for _ in range(30)) for _ in range(40)]

    def copy_of(text: str) -> str:
        words = text.split()
        words[rng.randrange(len(words))] = "changed"
        return " ".join(words)

    copies = [copy_of(t) for t in originals[:12]]
    lake = Lake(tmp_path / "lake")
    tasks = [task(q) for q in originals + copies]
    for start in (0, 20, 40):  # three fragments: each copy sits in another one
        lake.append("tasks", Task.to_arrow(tasks[start : start + 20]))
    queries = {t.id: t.query for t in tasks}
    runs = [trajectory(t) for t in tasks[:20]] + [trajectory(t) for t in tasks[40:]]
    lake.append("trajectories", Trajectory.to_arrow(runs[:20]))
    lake.append("trajectories", Trajectory.to_arrow(runs[20:]))
    views = {"tasks": lake.read("tasks"), "trajectories": lake.read("trajectories")}
    assert len(views["tasks"].dataset.get_fragments()) == 3
    bands, rows = optimal_bands(0.8, 128, 0.1)
    edges = near_edges(spark(), views, MinHashSettings(2, 128, bands, rows, seed=1), 0.8, 50)

    sets = {i: shingles(normalize([q]), 2).of(0) for i, q in queries.items()}
    for a, b, similarity in edges:
        if a.startswith("task-"):
            assert similarity == pytest.approx(jaccard(sets[a], sets[b])) and similarity >= 0.8
    found = {(a, b) for a, b, _ in edges}
    planted_tasks = {tuple(sorted((tasks[i].id, tasks[40 + i].id))) for i in range(12)}
    assert {p for p in found if p[0].startswith("task-")} == planted_tasks
    planted_runs = {tuple(sorted((runs[i].id, runs[20 + i].id))) for i in range(12)}
    assert {p for p in found if p[0].startswith("traj-")} == planted_runs


@pytest.mark.parametrize("partitions", [2, 7])
def test_each_partition_label_lands_in_its_own_shuffle_partition(
    spark: SparkSessionFactory, partitions: int
) -> None:
    from jobs.dedup.near import partition_labels

    session = spark()
    labels = partition_labels(session, partitions)
    placed = (
        session.createDataFrame([(label,) for label in labels], "part long")
        .repartition(partitions, "part")
        .selectExpr("part", "spark_partition_id() AS p")
        .toArrow()
    )
    where = dict(zip(placed["part"].to_pylist(), placed["p"].to_pylist(), strict=True))
    assert [where[label] for label in labels] == list(range(partitions))


def test_bad_params_name_the_fix() -> None:
    with pytest.raises(ValueError, match="Jaccard between 0 and 1"):
        NearParams(threshold=1.5)
    with pytest.raises(ValueError, match="choose one or more"):
        NearParams(tables=("tools",))
    assert pa.array([1]).to_pylist() == [1]


# -- the command ----------------------------------------------------------------------------------


def test_report_shows_clusters_examples_and_the_benchmark_item(
    curated: tuple[Lake, list], planted: Planted
) -> None:
    import json

    from typer.testing import CliRunner

    from astra.cli import app

    lake, _ = curated
    result = CliRunner().invoke(app, ["dedup", "report", "--lake", lake.uri, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    summary = {(s["level"], s["table"]): s for s in report["summary"]}
    assert summary[("exact", "tasks")]["rows"] == 3 and summary[("exact", "tasks")]["dropped"] == 2
    assert report["top_clusters"][0]["size"] == 3
    for cluster in report["top_clusters"]:
        current = set(lake.read(cluster["table"]).to_arrow(columns=["id"])["id"].to_pylist())
        assert all(e["kept"] == (e["id"] in current) for e in cluster["examples"])
    texts = {e["text"] for c in report["top_clusters"] for e in c["examples"]}
    assert normalize([EXACT[0]]).to_pylist()[0] in {normalize([t]).to_pylist()[0] for t in texts}
    hit = next(m for m in report["contamination"] if m["table"] == "tasks")
    assert hit["benchmark"] == "bfcl" and hit["text"] == BFCL_PROMPT
    assert {d["table"] for d in report["decisions"]} >= {"tasks", "trajectories", "rewards"}
    only = CliRunner().invoke(
        app, ["dedup", "report", "--lake", lake.uri, "--level", "near", "-f", "json"]
    )
    assert {s["level"] for s in json.loads(only.stdout)["summary"]} == {"near"}


def test_report_on_a_lake_without_clusters_is_one_clear_error(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "astra", "dedup", "report", "--lake", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 2
    assert "run `astra pipeline dedup` first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
