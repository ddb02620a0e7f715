"""Snapshots: a name pinning one version of every table, immutable once created.

The authoritative record is the ``SnapshotCreated`` event; ``SnapshotRecord`` is its
tabular view (what ``astra lake query`` sees as the ``snapshots`` table).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar

from schemas.base import Struct, TableModel

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PinnedTable(Struct):
    table: str
    version: int
    rows: int
    content_hash: str


class SnapshotRecord(TableModel):
    TABLE: ClassVar[str] = "snapshots"

    name: str
    created_at: datetime
    description: str
    log_position: int
    tables: list[PinnedTable]

    def version_of(self, table: str) -> int | None:
        for pinned in self.tables:
            if pinned.table == table:
                return pinned.version
        return None
