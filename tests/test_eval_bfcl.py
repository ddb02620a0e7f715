"""BFCL multi-turn evaluation: the gold replay through our loop passes every checked entry,
wrong answers fail, a tiny model runs end to end and its results reach the lake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_server import completion, serving
from typer.testing import CliRunner

from astra.cli import app
from astra.eval_cli import EndpointPolicy
from jobs.llm.client import OpenAICompatibleBackend
from lake import Lake
from lake.lineage import lineage
from schemas import Checkpoint, Eval
from schemas.events import RunStarted
from training.evals.bfcl import (
    CATEGORIES,
    BFCLEntry,
    BFCLError,
    EvalTarget,
    GoldPolicy,
    ModelPolicy,
    Reply,
    StepContext,
    cached_instances,
    check_categories,
    checkpoint_target,
    load_entries,
    openai_tool,
    run_bfcl_eval,
    run_entry,
)

runner = CliRunner()
# Every 25th entry of each category (8 each), so every backend class and turn shape shows up.
SAMPLE = [f"{c}_{i}" for c in CATEGORIES for i in range(0, 200, 25)]


@pytest.fixture(scope="module")
def sample() -> list[BFCLEntry]:
    return load_entries(CATEGORIES, ids=SAMPLE)


def test_the_gold_replay_passes_every_multi_turn_category(sample: list[BFCLEntry]) -> None:
    results = [run_entry(e, GoldPolicy()) for e in sample]
    assert {r.category for r in results} == set(CATEGORIES)
    failed = [(r.entry_id, r.error) for r in results if not r.passed]
    assert failed == []
    assert all(r.score == 1.0 for r in results)
    assert cached_instances() == 0  # every entry's backend instances are dropped after scoring
    # miss_func: the held-out function is offered, and called, only at its own turn.
    held = next(e for e, r in zip(sample, results, strict=True) if e.held_out)
    (turn, docs), *_ = held.held_out.items()
    result = next(r for r in results if r.entry_id == held.id)
    names = {d["name"] for d in docs}
    called = [{c["name"] for reply in t for c in reply["calls"]} for t in result.turns]
    assert names <= called[turn] and not any(names & c for c in called[:turn])
    # miss_param: the turn whose ground truth is empty gets a reply without calls.
    param = next(e for e in sample if e.category == "multi_turn_miss_param")
    empty = param.ground_truth.index([])
    result = next(r for r in results if r.entry_id == param.id)
    assert [reply["calls"] for reply in result.turns[empty]] == [[]]


class WrongValues(GoldPolicy):
    """The ground truth's calls with every string argument changed."""

    def respond(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: StepContext
    ) -> Reply:
        reply = super().respond(messages, tools, context)
        calls = tuple(
            (n, {k: v + "x" if isinstance(v, str) else v for k, v in a.items()})
            for n, a in reply.calls
        )
        return Reply(content=reply.content, calls=calls, raw=reply.raw)


class Silent:
    settings: dict[str, Any] = {"policy": "silent"}
    deterministic = True

    def respond(self, messages: Any, tools: Any, context: StepContext) -> Reply:
        return Reply(content="I cannot help with that.")


class NeverStops(GoldPolicy):
    """Repeats the turn's first ground-truth call in every reply."""

    def respond(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: StepContext
    ) -> Reply:
        first = StepContext(context.entry, context.turn, 0)
        return super().respond(messages, tools, first)


class Hostile:
    """Calls that are not backend calls: a builtin, and a keyword that is not a name."""

    settings: dict[str, Any] = {"policy": "hostile"}
    deterministic = True

    def __init__(self, target: Path) -> None:
        self.target = target

    def respond(self, messages: Any, tools: Any, context: StepContext) -> Reply:
        if context.step:
            return Reply(content="done")
        calls = (
            ("open", {"file": str(self.target), "mode": "w"}),
            ("cd", {"folder=__import__('os').getcwd()) or cd(folder": "x"}),
        )
        return Reply(content=None, calls=calls)


def test_wrong_answers_fail(sample: list[BFCLEntry], tmp_path: Path) -> None:
    base = [e for e in sample if e.category == "multi_turn_base"][:3]
    wrong = [run_entry(e, WrongValues()) for e in base]
    assert [r.passed for r in wrong] == [False, False, False]
    assert all(r.score == 0.0 and r.error.startswith("multi_turn:") for r in wrong)
    silent = run_entry(base[0], Silent())
    assert silent.passed is False
    assert silent.checker["error_type"] == "multi_turn:empty_turn_model_response"
    looping = run_entry(base[0], NeverStops(), max_steps=2)
    assert looping.passed is False and looping.force_terminated
    assert looping.checker["error_type"] == "multi_turn:force_terminated"
    assert len(looping.turns) == 1 and len(looping.turns[0]) == 2
    hostile = run_entry(base[0], Hostile(tmp_path / "written"))
    assert hostile.passed is False
    assert not (tmp_path / "written").exists()
    answered = [c for reply in hostile.turns[0] for c in reply["calls"]]
    assert [c["call"] for c in answered] == [None, None]
    assert all(c["result"].startswith("Error during execution") for c in answered)
    assert cached_instances() == 0


def test_only_the_pinned_multi_turn_categories_run() -> None:
    with pytest.raises(BFCLError, match="choose from multi_turn_base"):
        check_categories(["simple_python"])
    tool = openai_tool(load_entries(["multi_turn_base"], limit=1)[0].functions[0])
    assert tool["type"] == "function" and tool["function"]["parameters"]["type"] == "object"


def _gold_server(entry: BFCLEntry) -> Any:
    """A chat server that answers as the gold policy would, in the OpenAI tool-call format."""
    gold = GoldPolicy()

    def respond(payload: dict[str, Any]) -> tuple[int, Any]:
        messages = payload["messages"]
        turn = sum(1 for m in messages if m["role"] == "user") - 1
        step = 0 if messages[-1]["role"] == "user" else 1
        reply = gold.respond(messages, payload["tools"], StepContext(entry, turn, step))
        calls = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(reply.calls)
        ]
        return 200, completion(content=reply.content, tool_calls=calls or None)

    return respond


def test_an_openai_compatible_endpoint_runs_through_the_same_loop(sample, tmp_path) -> None:
    entry = next(e for e in sample if e.category == "multi_turn_base")
    with serving() as server:
        server.responder = _gold_server(entry)
        policy = EndpointPolicy(OpenAICompatibleBackend(server.base_url, "gold-server"), 64)
        result = run_entry(entry, policy)
    assert result.passed, result.error
    sent = server.requests[-1]
    assert sent["temperature"] == 0.0 and {t["function"]["name"] for t in sent["tools"]} >= {"cd"}
    called = [m for m in sent["messages"] if m.get("tool_calls")]
    assert isinstance(called[0]["tool_calls"][0]["function"]["arguments"], str)


# -- a tiny model end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Path, Checkpoint]:
    """A tiny model (training/models.py) whose tokenizer learned BFCL's text, registered as a
    checkpoint row of a fresh lake, with the metadata file training writes."""
    from training.models import build_tiny

    root = tmp_path_factory.mktemp("bfcl")
    entries = load_entries(["multi_turn_base"], limit=2)
    texts = [m["content"] for e in entries for t in e.turns for m in t]
    texts += [json.dumps(openai_tool(d)) for d in entries[0].functions]
    folder = build_tiny(texts, root / "model" / "final")
    lake = Lake(root / "lake")
    with lake.run("test-checkpoint", {"model": "tiny"}) as run:
        checkpoint = Checkpoint(
            kind="sft",
            training_run=run.run_id,
            step=0,
            path=str(folder.resolve()),
            base_model="tiny",
            snapshot="pinned",
            inputs=[],
            metrics={},
        )
        run.append("checkpoints", Checkpoint.to_arrow([checkpoint]))
    meta = {"snapshot": "pinned", "run_id": checkpoint.training_run, "kind": "sft"}
    (folder / "astra_checkpoint.json").write_text(json.dumps(meta))
    return lake, folder, checkpoint


def test_a_tiny_model_is_evaluated_end_to_end_into_the_lake(tiny_checkpoint) -> None:
    lake, folder, checkpoint = tiny_checkpoint
    target = checkpoint_target(lake, folder)
    assert target == EvalTarget(checkpoint.id, "pinned", (checkpoint.id,), str(folder.resolve()))
    policy = ModelPolicy(folder, max_new_tokens=8)
    result = run_bfcl_eval(lake, policy, target, ["multi_turn_base"], limit=2, max_steps=2)
    rows = [Eval.from_record(r) for r in lake.read("evals").to_arrow().to_pylist()]
    assert sorted(r.entry_id for r in rows) == ["multi_turn_base_0", "multi_turn_base_1"]
    for row in rows:
        assert row.checkpoint == checkpoint.id and row.snapshot == "pinned"
        assert row.benchmark == "bfcl" and row.benchmark_version == "2026.3.23"
        assert row.passed is not None and row.score == float(row.passed)
        assert row.settings["policy"] == "model" and row.settings["max_steps_per_turn"] == 2
        assert row.details["turns"] and row.details["checker"]["valid"] == row.passed
        assert row.parent_ids == [checkpoint.id]
    reached = {n.table for n in lineage(lake, rows[0].id).walk() if n.found}
    assert {"evals", "checkpoints"} <= reached
    started = next(e for _, e in lake.events(run_id=result.run_id) if isinstance(e, RunStarted))
    assert started.job == "eval-bfcl" and started.params["checkpoint"] == checkpoint.id
    assert [i.table for i in started.inputs] == ["checkpoints"]
    again = run_bfcl_eval(lake, policy, target, ["multi_turn_base"], limit=2, max_steps=2)
    assert again.reused and again.run_id == result.run_id
    assert sorted(r.id for r in again.rows) == sorted(r.id for r in rows)


def test_eval_and_report_commands(tiny_checkpoint, tmp_path: Path) -> None:
    lake, folder, checkpoint = tiny_checkpoint
    args = ["eval", "bfcl", "--model", str(folder), "--categories", "multi_turn_base"]
    args += ["--limit", "1", "--max-turns", "1", "--max-new-tokens", "4", "--lake", lake.uri]
    done = runner.invoke(app, [*args, "--format", "json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["checkpoint"] == checkpoint.id and summary["snapshot"] == "pinned"
    assert summary["accuracy"][0]["category"] == "multi_turn_base"
    assert summary["accuracy"][0]["entries"] == 1 and not summary["reused"]
    report = runner.invoke(app, ["report", "evals", "--lake", lake.uri, "--format", "json"])
    assert report.exit_code == 0, report.output
    lines = [r for r in json.loads(report.stdout) if r["checkpoint"] == checkpoint.id]
    assert {(r["settings"], r["entries"]) for r in lines} >= {
        ("model decoding=greedy max_new_tokens=4 max_steps_per_turn=1", 1)
    }
    assert all(r["model"] == "sft step 0" and r["accuracy"] is not None for r in lines)
    both = runner.invoke(app, ["eval", "bfcl", "--gold", "--model", str(folder)])
    assert both.exit_code == 2
    empty = runner.invoke(app, ["report", "evals", "--lake", str(tmp_path / "none")])
    assert empty.exit_code != 0
