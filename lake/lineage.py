"""Lineage: from any row, up through ``parent_ids`` to the source tool schemas, with the run
that produced each step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lake.core import Lake

LABEL_COLUMNS = ("name", "title", "query", "question", "prompt", "dimension", "tool_names")


@dataclass(frozen=True)
class LineageNode:
    row_id: str
    table: str | None
    label: str
    run_id: str | None
    job: str | None
    found: bool
    parents: tuple[LineageNode, ...] = field(default=())

    def walk(self) -> list[LineageNode]:
        """This node and every ancestor, depth first."""
        out = [self]
        for parent in self.parents:
            out.extend(parent.walk())
        return out


def _label(row: dict[str, Any]) -> str:
    for column in LABEL_COLUMNS:
        value = row.get(column)
        if value:
            text = " -> ".join(value) if isinstance(value, list) else str(value)
            return text if len(text) <= 80 else text[:77] + "..."
    return ""


def lineage(
    lake: Lake, row_id: str, snapshot: str | None = None, max_depth: int = 32
) -> LineageNode:
    """The lineage tree of ``row_id``; rows that cannot be found are marked, never skipped."""
    seen: dict[str, LineageNode] = {}

    def visit(current: str, depth: int) -> LineageNode:
        if current in seen:
            return seen[current]
        try:
            table, row = lake.find_row(current, snapshot=snapshot)
        except KeyError:
            from schemas import table_of_row_id

            node = LineageNode(current, table_of_row_id(current), "", None, None, found=False)
            seen[current] = node
            return node
        run_id = row.get("run_id")
        run = lake.state.runs.get(run_id or "")
        parents: tuple[LineageNode, ...] = ()
        if depth < max_depth:
            parents = tuple(visit(p, depth + 1) for p in row.get("parent_ids") or [])
        node = LineageNode(
            row_id=current,
            table=table,
            label=_label(row),
            run_id=run_id,
            job=run.started.job if run else None,
            found=True,
            parents=parents,
        )
        seen[current] = node
        return node

    return visit(row_id, 0)
