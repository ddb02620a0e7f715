"""ASTRA Lake's storage layer: versioned Lance tables, an event log, snapshots and lineage.

Imports only ``schemas`` from the project.
"""

from __future__ import annotations

from lake.core import Lake, TableDiff, TableInfo, WriteResult
from lake.errors import (
    LakeError,
    ReadOnlyViewError,
    SchemaMismatchError,
    SnapshotError,
    TableNotFoundError,
    UnknownTableError,
)
from lake.hashing import content_hash
from lake.run import Commit, Run, RunResult, WriteReport
from lake.views import TableView

__all__ = [
    "Commit",
    "Lake",
    "LakeError",
    "ReadOnlyViewError",
    "Run",
    "RunResult",
    "SchemaMismatchError",
    "SnapshotError",
    "TableDiff",
    "TableInfo",
    "TableNotFoundError",
    "TableView",
    "UnknownTableError",
    "WriteReport",
    "WriteResult",
    "content_hash",
]
