"""Content hashes of Arrow data, independent of how the data happens to be chunked."""

from __future__ import annotations

import hashlib

import pyarrow as pa

# Provenance columns differ between a run and its replay; they are not content.
NON_CONTENT_COLUMNS = frozenset({"run_id"})
_BATCH_ROWS = 65_536


class ContentHasher:
    """Incremental sha256 over rows, in order, fed as Arrow tables of one schema.

    The bytes hashed are the Arrow IPC encoding of fixed-size batches, so the same rows give the
    same digest however they were split into writes or chunks.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def update(self, table: pa.Table) -> None:
        keep = [n for n in table.column_names if n not in NON_CONTENT_COLUMNS]
        table = table.select(keep).replace_schema_metadata(None)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= _BATCH_ROWS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        combined = pa.concat_tables(self._pending).combine_chunks()
        cut = combined.num_rows if final else combined.num_rows - combined.num_rows % _BATCH_ROWS
        for start in range(0, cut, _BATCH_ROWS):
            batch = combined.slice(start, min(_BATCH_ROWS, cut - start)).combine_chunks()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_table(batch)
            self._sha.update(sink.getvalue())
        rest = combined.slice(cut)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def hexdigest(self) -> str:
        self._flush(final=True)
        return "sha256:" + self._sha.hexdigest()


def content_hash(table: pa.Table) -> str:
    """The content hash of a table's rows in order, ignoring provenance columns.

    >>> t = pa.table({"id": ["a", "b"], "run_id": ["r1", "r1"]})
    >>> content_hash(t) == content_hash(pa.table({"id": ["a", "b"], "run_id": ["r2", None]}))
    True
    """
    hasher = ContentHasher()
    hasher.update(table)
    return hasher.hexdigest()
