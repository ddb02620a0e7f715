"""Training from pinned snapshots: SFT on the tiny model, pinning, checkpoints in the lake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lake import Lake
from lake.lineage import lineage
from schemas import Checkpoint
from schemas.events import RunStarted
from training.models import load
from training.pinned import PinnedInputs, UnpinnedInputError
from training.sft import SFTSettings, render, run_sft, training_rows


@pytest.fixture(scope="module")
def sft_run(pipeline_lake: Lake, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sft")
    result = run_sft(pipeline_lake, "pinned", "tiny", out, SFTSettings(max_steps=3, batch_size=2))
    return pipeline_lake, out, result


def test_training_refuses_unpinned_input(pipeline_lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(UnpinnedInputError, match="--snapshot"):
        run_sft(pipeline_lake, None, "tiny", tmp_path)
    pinned = PinnedInputs.resolve(pipeline_lake, "pinned")
    with pytest.raises(UnpinnedInputError, match="does not pin table 'rollouts'"):
        pinned.read("rollouts")


def test_the_loss_covers_assistant_tokens_only(sft_run) -> None:
    lake, out, _ = sft_run
    _, tokenizer = load(out / "base")
    _, rows = training_rows(PinnedInputs.resolve(lake, "pinned"))
    row = next(r for r in rows if any(m["role"] == "tool" for m in r["messages"]))
    rendered = render(tokenizer, row)
    ids, mask = rendered["input_ids"], rendered["assistant_masks"]
    trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    final = row["messages"][-1]["content"]
    assert final in trained and final not in context
    first_call = row["messages"][2]["tool_calls"][0]["function"]["name"]
    assert f'"name": "{first_call}"' in trained
    tool_output = next(m["content"] for m in row["messages"] if m["role"] == "tool")
    assert tool_output not in trained and tool_output in context
    assert row["messages"][1]["content"] in context  # the user's request


def test_sft_steps_change_the_parameters(sft_run) -> None:
    _, out, result = sft_run
    before, _ = load(out / "base")
    after, _ = load(out / "final")
    assert result.metrics["steps"] == 3
    changed = [
        name
        for (name, a), (_, b) in zip(
            before.named_parameters(), after.named_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert len(changed) == len(list(before.parameters()))


def test_checkpoints_record_the_snapshot_and_reach_their_data(sft_run) -> None:
    lake, out, result = sft_run
    rows = [Checkpoint.from_record(r) for r in lake.read("checkpoints").to_arrow().to_pylist()]
    assert [c.id for c in rows] == [c.id for c in result.checkpoints]
    checkpoint = rows[-1]
    snapshot = lake.snapshot("pinned")
    pinned = {p.table: p for p in snapshot.tables}
    assert checkpoint.snapshot == "pinned"
    assert [(p.table, p.content_hash) for p in checkpoint.inputs] == [
        ("sft_examples", pinned["sft_examples"].content_hash)
    ]
    meta = json.loads((out / "final" / "astra_checkpoint.json").read_text())
    assert meta["snapshot"] == "pinned" and meta["run_id"] == result.run_id
    started = next(e for _, e in lake.events(run_id=result.run_id) if isinstance(e, RunStarted))
    assert started.params["snapshot"] == "pinned"
    assert dict((v.table, v.version) for v in started.inputs) == {
        "sft_examples": pinned["sft_examples"].version
    }
    reached = {node.table for node in lineage(lake, checkpoint.id).walk() if node.found}
    assert {"checkpoints", "sft_examples", "trajectories", "tasks", "tools"} <= reached
