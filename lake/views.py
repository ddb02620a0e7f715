"""Read-only views of one table at one committed version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import lance
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lake.hashing import ContentHasher, content_hash
from schemas import TableModel
from schemas.base import Row


@dataclass(frozen=True)
class TableView:
    """A table pinned at ``version``. It has no write methods; reads return the same rows forever.

    Rows stored with an older ``schema_version`` are upcast to the current model on read.
    """

    table: str
    version: int
    model: type[TableModel]
    dataset: lance.LanceDataset

    @property
    def schema(self) -> pa.Schema:
        return self.model.arrow_schema()

    def count_rows(self, filter: str | None = None) -> int:
        return self.dataset.count_rows(filter=filter)

    @property
    def needs_upcast(self) -> bool:
        """Whether any stored row predates the model, so reads must upcast whole rows."""
        return self._needs_upcast

    @cached_property
    def _needs_upcast(self) -> bool:
        """Whether stored rows predate the model (checked once per view: it scans a column)."""
        if not issubclass(self.model, Row):
            return False
        stored = self.dataset.schema
        if stored.names != self.schema.names:
            return True
        if self.dataset.count_rows() == 0:
            return False
        oldest = pc.min(self.dataset.to_table(columns=["schema_version"])["schema_version"])
        return oldest.as_py() < self.model.SCHEMA_VERSION

    def to_arrow(self, columns: list[str] | None = None, filter: str | None = None) -> pa.Table:
        if self._needs_upcast:
            return self._upcast(self.dataset.to_table(filter=filter), columns)
        return self.dataset.to_table(columns=columns, filter=filter)

    def take(
        self, positions: Sequence[int] | np.ndarray, columns: list[str] | None = None
    ) -> pa.Table:
        """The rows at ``positions`` (0-based, in scan order: the order ``to_arrow`` returns),
        in the order given.
        """
        indices = pa.array(np.asarray(positions, dtype=np.int64))
        if self._needs_upcast:
            return self._upcast(self.dataset.take(indices), columns)
        return self.dataset.take(indices, columns=columns)

    def _upcast(self, stored: pa.Table, columns: list[str] | None) -> pa.Table:
        assert issubclass(self.model, Row)
        model = self.model
        rows = [model.from_record(model.upcast(r)).to_record() for r in stored.to_pylist()]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        return table.select(columns) if columns else table

    def to_polars(self) -> pl.LazyFrame:
        """A lazy polars frame over this version (Lance scans are pushed down where possible)."""
        if self._needs_upcast:
            return pl.from_arrow(self.to_arrow()).lazy()  # type: ignore[union-attr]
        return pl.scan_pyarrow_dataset(self.dataset)

    def content_hash(self) -> str:
        """The content hash of every row in stored order, streamed batch by batch."""
        if self._needs_upcast:
            return content_hash(self.to_arrow())
        hasher = ContentHasher()
        for batch in self.dataset.to_batches(batch_size=65_536):
            hasher.update(pa.Table.from_batches([batch]))
        return hasher.hexdigest()

    def indexes(self) -> list[dict[str, object]]:
        """The indexes this version carries: name, kind (``Inverted``, ``BTree``, ``IVF_PQ``...)
        the columns each covers and how many rows it indexes."""
        return [
            {
                "name": i.name,
                "kind": i.index_type,
                "columns": list(i.field_names),
                "rows": i.num_rows_indexed,
            }
            for i in self.dataset.describe_indices()
        ]

    def row(self, row_id: str) -> dict | None:
        """One row by id, or None."""
        found = self.to_arrow(filter=f"id = '{_sql_quote(row_id)}'")
        return found.to_pylist()[0] if found.num_rows else None


def _sql_quote(value: str) -> str:
    return value.replace("'", "''")
