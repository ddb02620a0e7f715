"""Supervised fine-tuning on a snapshot's ``sft_examples`` with trl's ``SFTTrainer``.

Each example becomes a conversational row (``messages`` in the OpenAI tools format, with
tool-call arguments as objects, and ``tools``); the chat template renders tool calls the way
trl's Qwen2.5 template does, and its ``{% generation %}`` markers give the assistant mask that
puts the loss on assistant tokens only (tool results and user turns are context). The run
goes through the lake: its ``RunStarted`` event records the snapshot, the table versions and
content hashes it read, each checkpoint folder gets an ``astra_checkpoint.json`` with the
same, and a ``checkpoints`` row per checkpoint lands in the lake with the trained-on
examples as its parents.

Defaults follow the paper (cosine schedule, 5% warmup, 2 epochs, no packing) scaled to the
model: the learning rate is the paper's 5e-6 for models above 1B parameters, 2e-5 above
100M, and 1e-3 below (the tiny CPU model).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lake import Lake
from schemas import Checkpoint, SFTExample
from training.models import TINY, build_tiny, load, resolve
from training.pinned import PinnedInputs

TABLES = ["sft_examples"]


@dataclass(frozen=True)
class SFTSettings:
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: epochs)"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the train split (paper: 2)"})
    batch_size: int = field(default=4, metadata={"help": "examples per device step"})
    grad_accum: int = field(default=1, metadata={"help": "steps per optimizer update"})
    learning_rate: float | None = field(
        default=None, metadata={"help": "peak learning rate (default: scaled to the model)"}
    )
    max_length: int = field(default=2048, metadata={"help": "tokens per example (truncated)"})
    save_steps: int = field(default=0, metadata={"help": "save every N steps (0: at the end)"})
    seed: int = field(default=0, metadata={"help": "seed of data order and initialisation"})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use epochs) or at least 1")
        if self.epochs <= 0:
            raise ValueError("epochs must be positive")


def scaled_learning_rate(parameters: int) -> float:
    """The paper's rate for large models, higher for small ones.

    >>> scaled_learning_rate(14_000_000_000), scaled_learning_rate(500_000_000)
    (5e-06, 2e-05)
    >>> scaled_learning_rate(200_000)
    0.001
    """
    if parameters > 1_000_000_000:
        return 5e-6
    return 2e-5 if parameters > 100_000_000 else 1e-3


def conversation(example: SFTExample) -> dict[str, Any]:
    """One trainer row: OpenAI-format messages (arguments as objects) and the tools."""
    messages = []
    for message in example.messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content or ""}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "type": "function",
                    "function": {"name": c.name, "arguments": _arguments(c.arguments)},
                }
                for c in message.tool_calls
            ]
        if message.role == "tool" and message.name:
            entry["name"] = message.name
        messages.append(entry)
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": json.loads(t.parameters),
            },
        }
        for t in example.tools
    ]
    return {"messages": messages, "tools": tools}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"raw": text}


def training_rows(pinned: PinnedInputs, split: str = "train") -> tuple[list[str], list[dict]]:
    """(example ids, trainer rows) of one split of the snapshot's ``sft_examples``."""
    examples = [
        SFTExample.from_record(r) for r in pinned.read("sft_examples").to_arrow().to_pylist()
    ]
    chosen = sorted((e for e in examples if e.split == split), key=lambda e: e.id)
    return [e.id for e in chosen], [conversation(e) for e in chosen]


def render(tokenizer: Any, row: dict[str, Any]) -> dict[str, list[int]]:
    """Token ids and the assistant mask of one row, through the chat template.

    Rendering here (not in the trainer) keeps each row's tools exactly as they are: a
    datasets table would widen every tool schema to the union of all schemas' keys.
    """
    out = tokenizer.apply_chat_template(
        row["messages"],
        tools=row["tools"] or None,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    return {"input_ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"])}


def corpus(rows: list[dict]) -> list[str]:
    """The text a tiny tokenizer is trained on: every message and tool schema."""
    texts = []
    for row in rows:
        texts.extend(json.dumps(m, ensure_ascii=False) for m in row["messages"])
        texts.extend(json.dumps(t, ensure_ascii=False) for t in row["tools"])
    return texts


@dataclass
class SFTResult:
    run_id: str
    output_dir: Path
    checkpoints: list[Checkpoint]
    metrics: dict[str, Any]


def run_sft(
    lake: Lake,
    snapshot: str | None,
    model: str,
    output_dir: Path,
    settings: SFTSettings = SFTSettings(),
    model_cache: Path = Path(".cache/models"),
) -> SFTResult:
    """Train ``model`` (a path, ``tiny`` or ``gemma3-270m``) on the snapshot's train split."""
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    pinned = PinnedInputs.resolve(lake, snapshot)
    ids, rows = training_rows(pinned)
    if not rows:
        raise ValueError(
            f"snapshot {pinned.snapshot.name!r} has no train-split sft_examples; run "
            "`astra pipeline trajectories` and pin a new snapshot"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    base = (
        str(build_tiny(corpus(rows), output_dir / "base", settings.seed))
        if model == TINY
        else resolve(model, model_cache)
    )
    policy, tokenizer = load(base)
    parameters = sum(p.numel() for p in policy.parameters())
    rate = settings.learning_rate or scaled_learning_rate(parameters)
    inputs = pinned.inputs(TABLES)
    params = {
        "snapshot": pinned.snapshot.name,
        "model": model,
        "settings": asdict(settings),
        "learning_rate": rate,
        "content_hashes": {p.table: p.content_hash for p in inputs},
    }
    with lake.run(
        "train-sft",
        params,
        seed=settings.seed,
        inputs={p.table: p.version for p in inputs},
        idempotent=False,
    ) as run:
        config = SFTConfig(
            output_dir=str(output_dir),
            max_steps=settings.max_steps,
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.grad_accum,
            learning_rate=rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,  # a float below 1 is a share of the steps
            logging_steps=1,
            save_strategy="steps" if settings.save_steps else "no",
            save_steps=settings.save_steps or 500,
            report_to="none",
            # The rows come pre-rendered with an ``assistant_masks`` column, which trl turns
            # into labels (-100 elsewhere): the loss is on assistant tokens only.
            assistant_only_loss=False,
            packing=False,
            max_length=settings.max_length,
            seed=settings.seed,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=policy,
            args=config,
            train_dataset=Dataset.from_list([render(tokenizer, row) for row in rows]),
            processing_class=tokenizer,
        )
        # Metrics go to the run's metrics and metrics.json; stdout is the CLI's (--format json).
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        outcome = trainer.train()
        seconds = time.perf_counter() - start
        final = output_dir / "final"
        trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        folders = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        metrics = {
            "train_loss": float(outcome.training_loss),
            "steps": int(outcome.global_step),
            "seconds": round(seconds, 3),
            "parameters": parameters,
            "examples": len(rows),
            "log": [
                {k: v for k, v in entry.items() if isinstance(v, int | float)}
                for entry in trainer.state.log_history
            ],
        }
        checkpoints = []
        for folder, step in [
            *((f, int(f.name.split("-")[1])) for f in folders),
            (final, int(outcome.global_step)),
        ]:
            meta = {
                **pinned.metadata(TABLES),
                "run_id": run.run_id,
                "kind": "sft",
                "step": step,
                "base_model": model,
            }
            (folder / "astra_checkpoint.json").write_text(json.dumps(meta, indent=2))
            checkpoints.append(
                Checkpoint(
                    kind="sft",
                    training_run=run.run_id,
                    step=step,
                    path=str(folder.resolve()),
                    base_model=model,
                    snapshot=pinned.snapshot.name,
                    inputs=inputs,
                    metrics=metrics if folder == final else {"step": step},
                    parent_ids=ids,
                )
            )
        run.append("checkpoints", Checkpoint.to_arrow(checkpoints))
        run.metrics.update({k: v for k, v in metrics.items() if k != "log"})
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return SFTResult(run.run_id, output_dir, checkpoints, metrics)
