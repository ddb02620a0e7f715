"""Training reads only pinned data: a named snapshot of the lake, never a moving table.

:class:`PinnedInputs` resolves a snapshot (or creates one for ``"new"``), refuses tables the
snapshot does not pin, and records what was read (name, versions, content hashes) for the
run's event and the checkpoint's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lake import Lake
from lake.views import TableView
from schemas.snapshots import PinnedTable, SnapshotRecord


class UnpinnedInputError(ValueError):
    """Training was asked to read data that no snapshot pins."""


@dataclass(frozen=True)
class PinnedInputs:
    lake: Lake
    snapshot: SnapshotRecord

    @classmethod
    def resolve(cls, lake: Lake, snapshot: str | None) -> PinnedInputs:
        """The snapshot named ``snapshot``; ``"new"`` pins the lake as it is now."""
        if not snapshot:
            raise UnpinnedInputError(
                "training reads only pinned data: pass --snapshot NAME (see `astra lake "
                "snapshot list`) or --snapshot new to pin the lake as it is now"
            )
        if snapshot == "new":
            name = "train-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            return cls(lake, lake.create_snapshot(name, description="pinned for training"))
        return cls(lake, lake.snapshot(snapshot))

    def read(self, table: str) -> TableView:
        if self.snapshot.version_of(table) is None:
            pinned = sorted(p.table for p in self.snapshot.tables)
            raise UnpinnedInputError(
                f"snapshot {self.snapshot.name!r} does not pin table {table!r} (it pins "
                f"{pinned}); build that table, then pin a new snapshot"
            )
        return self.lake.read(table, snapshot=self.snapshot.name)

    def inputs(self, tables: list[str]) -> list[PinnedTable]:
        wanted = set(tables)
        return [p for p in self.snapshot.tables if p.table in wanted]

    def metadata(self, tables: list[str]) -> dict[str, Any]:
        """What goes into a checkpoint's metadata file."""
        return {
            "lake": self.lake.uri,
            "snapshot": self.snapshot.name,
            "tables": [p.model_dump() for p in self.inputs(tables)],
        }
