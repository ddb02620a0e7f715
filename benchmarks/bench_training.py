"""Training on CPU: SFT through the lake vs plain trl, and RL rollout throughput.

A temporary lake gets both pipelines on the shipped catalog and a snapshot. Then:

- **SFT**, same tiny model, same rows, same steps, run alternately ``--repeats`` times:
  (a) plain trl: the snapshot's train split exported once to JSONL beforehand, read back with
  ``datasets``, rendered with the same chat template, ``SFTTrainer``; (b) ``run_sft``: reads
  the pinned snapshot from the lake, records the run, writes the checkpoint row. Wall time
  from reading the data to the saved model; tokens/s = trained-on tokens / wall time. The
  lake overhead is (b) / (a) - 1 on the medians.
- **RL**: ``run_rl`` with the SFT model's sampler, then with a gold policy (the environments'
  gold calls, so every rollout exercises the sandbox): environment steps (tool calls) per
  second and the share of wall time in generation, sandbox, the update and lake writes.
Run: ``python benchmarks/bench_training.py [--steps 8] [--repeats 3] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astra.pipeline import run_environment_pipeline, run_trajectory_pipeline
from jobs.config import load_config
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from schemas import Environment
from training.models import build_tiny, load
from training.pinned import PinnedInputs
from training.rl import RLSettings, run_rl
from training.sft import SFTSettings, corpus, render, run_sft, training_rows


def build_lake(folder: Path) -> Lake:
    config = load_config(
        None,
        {
            "spark.master": "local[2]",
            "synthesis.chains_per_server": "4",
            "synthesis.queries_per_chain": "1",
            "synthesis.augmentations": "diverse",
            "synthesis.failure_rate": "0.0",
        },
    )
    factory = SparkSessionFactory(SparkConfig(master="local[2]", python=sys.executable))
    lake = Lake(folder)
    try:
        run_trajectory_pipeline(lake, config, "builtin:sample", factory=factory)
        run_environment_pipeline(lake, config, factory=factory)
    finally:
        factory.stop()
    lake.create_snapshot("bench")
    return lake


def plain_trl(jsonl: Path, base: Path, out: Path, steps: int) -> tuple[float, int]:
    """trl alone on the exported rows: (seconds, trained-on tokens)."""
    import torch
    from datasets import load_dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    start = time.perf_counter()
    rows = [json.loads(r["row"]) for r in load_dataset("json", data_files=str(jsonl))["train"]]
    model, tokenizer = load(base)
    from datasets import Dataset

    dataset = Dataset.from_list([render(tokenizer, row) for row in rows])
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=2,
            learning_rate=1e-3,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            report_to="none",
            save_strategy="no",
            max_length=2048,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
            seed=0,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(str(out / "final"))
    tokens = sum(
        sum(1 for label in row["labels"] if label != -100) for row in trainer.train_dataset
    )
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="SFT steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"steps": args.steps, "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        lake = build_lake(work / "lake")
        pinned = PinnedInputs.resolve(lake, "bench")
        _, rows = training_rows(pinned)
        jsonl = work / "sft.jsonl"
        jsonl.write_text("".join(json.dumps({"row": json.dumps(r)}) + "\n" for r in rows))
        base = build_tiny(corpus(rows), work / "base")
        plain, through, tokens = [], [], 0
        for i in range(args.repeats):
            seconds, tokens = plain_trl(jsonl, base, work / f"plain-{i}", args.steps)
            plain.append(seconds)
            start = time.perf_counter()
            run_sft(
                lake, "bench", str(base), work / f"lake-{i}",
                SFTSettings(max_steps=args.steps, batch_size=2, learning_rate=1e-3),
            )  # fmt: skip
            through.append(time.perf_counter() - start)
            print(f"run {i}: plain trl {plain[-1]:.2f}s, through the lake {through[-1]:.2f}s")
        a, b = statistics.median(plain), statistics.median(through)
        report["sft"] = {
            "examples": len(rows),
            "plain_trl_s": [round(s, 3) for s in plain],
            "lake_s": [round(s, 3) for s in through],
            "trained_tokens": tokens,
            "plain_tokens_per_s": round(tokens / a, 1),
            "lake_tokens_per_s": round(tokens / b, 1),
            "lake_overhead": round(b / a - 1, 4),
        }
        print(json.dumps(report["sft"]))
        settings = RLSettings(steps=2, group_size=4, groups_per_batch=1, max_groups_per_step=3,
                              max_turns=4, max_new_tokens=64)  # fmt: skip
        sampled = run_rl(lake, "bench", str(work / "lake-0" / "final"), work / "rl", settings)
        envs = [
            Environment.from_record(r) for r in lake.read("environments").to_arrow().to_pylist()
        ]
        env = max(envs, key=lambda e: (len(e.expected), e.id))
        _, tokenizer = load(base)
        gold = run_rl(
            lake, "bench", str(work / "lake-0" / "final"), work / "rl-gold",
            RLSettings(steps=2, group_size=4, groups_per_batch=1, max_groups_per_step=2,
                       environments=(env.id,)),
            generate=gold_policy(tokenizer, env),
        )  # fmt: skip
        report["rl"] = {
            "sampled_policy": shares(sampled.metrics),
            "gold_policy": shares(gold.metrics),
        }
        print(json.dumps(report["rl"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def shares(metrics: dict[str, Any]) -> dict[str, Any]:
    wall = metrics["seconds"] + metrics["lake_s"]
    parts = ("generation_s", "sandbox_s", "update_s", "lake_s")
    return {
        "rollouts": metrics["rollouts"],
        "environment_steps": metrics["environment_steps"],
        "seconds": round(wall, 3),
        "environment_steps_per_s": metrics["environment_steps_per_s"],
        **{f"share_{p[:-2]}": round(metrics[p] / wall, 3) if wall else 0.0 for p in parts},
    }


def gold_policy(tokenizer: Any, env: Environment) -> Any:
    """Emits the environment's gold calls, one per turn, then a final answer."""
    state = {"turn": 0, "prompt": -1}

    def generate(ids: list[int]) -> list[int]:
        if len(ids) <= state["prompt"] or state["prompt"] < 0:
            state["turn"] = 0
        if state["turn"] == 0:
            state["prompt"] = len(ids)
        turn = state["turn"]
        state["turn"] += 1
        if turn >= len(env.expected):
            return tokenizer.encode("Done.<|im_end|>", add_special_tokens=False)
        answer = env.expected[turn]
        call = {"name": answer.tool_name, "arguments": json.loads(answer.arguments)}
        text = f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"
        return tokenizer.encode(text, add_special_tokens=False)

    return generate


if __name__ == "__main__":
    main()
