"""The SFT set out of the lake: OpenAI-messages JSONL and a Hugging Face dataset.

Both hold one row per ``sft_examples`` row, read at a snapshot (or the latest version):
``messages`` in the OpenAI chat format (assistant ``tool_calls`` with ``function.arguments``
as a JSON string, tool messages with ``tool_call_id``), ``tools`` in the OpenAI ``tools``
format, and ``id``, ``trajectory_id``, ``domain``, ``split`` and ``reward`` so every exported
row traces back to the lake. In the Hugging Face dataset ``tools`` is kept as JSON text: as
Arrow structs, every schema would be widened to the union of all schemas' keys.

Tool names are the catalog's own: a tool whose catalog name is not a valid function name
(``Hotels.SearchHotel``) is called by an alias in the lake (``Hotels_SearchHotel``, see
:mod:`schemas.tools`), and the export maps the alias back to the ``original_name`` in the
tools list and in the assistant's tool calls. The mapping is exact: an example's trajectory
names the tool rows it was offered (``tool_ids``), read from ``tools`` at the same snapshot.
Free text (the system prompt, answers) is left as it is. Original names may break OpenAI's
function-name rule; ``restore_names=False`` keeps the aliases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from lake import Lake
from schemas import SFTExample

Split = Literal["train", "eval", "all"]


def openai_row(example: SFTExample, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One example as an OpenAI fine-tuning row (plus its lake identity); ``names`` maps the
    aliases of its tools to their original names."""
    names = names or {}
    messages = []
    for message in example.messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": names.get(call.name, call.name),
                        "arguments": call.arguments,
                    },
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
                "name": names.get(t.name, t.name),
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


def original_names(
    lake: Lake, snapshot: str | None, trajectory_ids: Iterable[str]
) -> dict[str, dict[str, str]]:
    """For each trajectory that was offered aliased tools: alias -> the tool's original name."""
    tools = lake.read("tools", snapshot=snapshot)
    if "original_name" not in tools.dataset.schema.names:
        return {}  # a tools table written before aliases existed
    aliased = tools.to_arrow(
        columns=["id", "name", "original_name"], filter="original_name IS NOT NULL"
    ).to_pylist()
    if not aliased:
        return {}
    by_id = {t["id"]: (t["name"], t["original_name"]) for t in aliased}
    wanted = set(trajectory_ids)
    names: dict[str, dict[str, str]] = {}
    offered = lake.read("trajectories", snapshot=snapshot).to_arrow(columns=["id", "tool_ids"])
    for row in offered.to_pylist():
        if row["id"] not in wanted:
            continue
        renamed = dict(by_id[i] for i in row["tool_ids"] or [] if i in by_id)
        if renamed:
            names[row["id"]] = renamed
    return names


def sft_rows(
    lake: Lake, snapshot: str | None, split: Split, restore_names: bool = True
) -> list[dict[str, Any]]:
    """The export rows of ``split`` (``all`` for both), by example id, with the catalog's
    tool names restored unless ``restore_names`` is False."""
    view = lake.read("sft_examples", snapshot=snapshot)
    examples = sorted(
        (SFTExample.from_record(r) for r in view.to_arrow().to_pylist()), key=lambda e: e.id
    )
    chosen = [e for e in examples if split == "all" or e.split == split]
    names = (
        original_names(lake, snapshot, (e.trajectory_id for e in chosen))
        if restore_names and chosen
        else {}
    )
    return [openai_row(e, names.get(e.trajectory_id)) for e in chosen]


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
