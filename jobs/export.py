"""The SFT set out of the lake: OpenAI-messages JSONL and a Hugging Face dataset.

Both hold one row per ``sft_examples`` row, read at a snapshot (or the latest version):
``messages`` in the OpenAI chat format (assistant ``tool_calls`` with ``function.arguments``
as a JSON string, tool messages with ``tool_call_id``), ``tools`` in the OpenAI ``tools``
format, and ``id``, ``trajectory_id``, ``domain``, ``split`` and ``reward`` so every exported
row traces back to the lake. In the Hugging Face dataset ``tools`` is kept as JSON text: as
Arrow structs, every schema would be widened to the union of all schemas' keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from lake import Lake
from schemas import SFTExample

Split = Literal["train", "eval", "all"]


def openai_row(example: SFTExample) -> dict[str, Any]:
    """One example as an OpenAI fine-tuning row (plus its lake identity)."""
    messages = []
    for message in example.messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ]
        if message.role == "tool":
            entry["tool_call_id"] = message.tool_call_id
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
    return {
        "id": example.id,
        "trajectory_id": example.trajectory_id,
        "domain": example.domain,
        "split": example.split,
        "reward": example.reward,
        "messages": messages,
        "tools": tools,
    }


def sft_rows(lake: Lake, snapshot: str | None, split: Split) -> list[dict[str, Any]]:
    view = lake.read("sft_examples", snapshot=snapshot)
    examples = sorted(
        (SFTExample.from_record(r) for r in view.to_arrow().to_pylist()), key=lambda e: e.id
    )
    return [openai_row(e) for e in examples if split == "all" or e.split == split]


def export_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def export_hf(rows: list[dict[str, Any]], folder: Path) -> Path:
    from datasets import Dataset

    flat = [{**row, "tools": json.dumps(row["tools"], ensure_ascii=False)} for row in rows]
    Dataset.from_list(flat).save_to_disk(str(folder))
    return folder
