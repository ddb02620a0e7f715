"""A run: the unit of writing. Outputs are staged, then committed together through the log.

Appends are written straight to Lance data files (invisible until committed); upserts and
replacements are spilled to a staging dataset under ``_astra/staging/`` and streamed into the
table at commit, so a run's memory does not grow with its output.
``commit`` takes the lake's commit lock, rolls back versions a dead run left
behind, commits each output table once, and then appends the run's ``TableCommitted`` events
and ``RunFinished`` in one log commit: that log commit is the moment the outputs appear.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lance
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import FragmentMetadata, write_fragments

from lake.errors import RunStateError, SchemaMismatchError, UnknownTableError
from lake.hashing import ContentHasher
from lake.storage import is_local
from lake.validation import prepare_rows
from schemas import DATA_TABLES, Reject, Row
from schemas.events import (
    Event,
    RowsRejected,
    RunFailed,
    RunFinished,
    TableCommitted,
    TableVersion,
    UncommittedVersionsDiscarded,
)

if TYPE_CHECKING:
    from lake.core import Lake


@dataclass(frozen=True)
class WriteReport:
    """What one ``append``/``upsert`` call staged: rows accepted, rejected (by reason), merged."""

    table: str
    rows: int
    rejected: int
    reject_reasons: dict[str, int]
    duplicates_skipped: int


@dataclass(frozen=True)
class Commit:
    """A committed output: the table, its new version, rows written by the run and in total."""

    table: str
    version: int
    rows_written: int
    rows_total: int
    content_hash: str


@dataclass(frozen=True)
class RunResult:
    run_id: str
    job: str
    reused: bool
    commits: tuple[Commit, ...]
    metrics: dict[str, Any]

    def commit_for(self, table: str) -> Commit | None:
        return next((c for c in self.commits if c.table == table), None)


Operation = Literal["append", "upsert", "replace"]
IndexKind = Literal["FTS", "BTREE", "IVF_PQ"]
INDEX_KINDS: tuple[IndexKind, ...] = ("FTS", "BTREE", "IVF_PQ")


@dataclass(frozen=True)
class IndexSpec:
    """An index a run builds on one of its output tables as part of its commit.

    ``FTS`` is Lance's inverted (full-text, BM25) index, ``BTREE`` a scalar index for filters
    and lookups, ``IVF_PQ`` a vector index (``options`` go to ``LanceDataset.create_index``,
    e.g. ``metric``, ``num_partitions``, ``num_sub_vectors``). They are the indexes LanceDB
    builds and uses, so ``lancedb.connect(root)`` searches them too.
    """

    column: str
    kind: IndexKind
    options: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, **dict(self.options)}


@dataclass
class _Staged:
    operation: Operation
    fragments: list[FragmentMetadata] = field(default_factory=list)
    staging_uri: str | None = None
    hasher: ContentHasher = field(default_factory=ContentHasher)
    hash_after_commit: bool = False


def new_run_id() -> str:
    return "run-" + secrets.token_hex(8)


class Run:
    """Stages writes for one run; use through ``Lake.run`` as a context manager."""

    def __init__(
        self,
        lake: Lake,
        run_id: str,
        job: str,
        run_key: str,
        previous: RunResult | None = None,
    ) -> None:
        self.lake = lake
        self.run_id = run_id
        self.job = job
        self.run_key = run_key
        self.previous = previous
        self.metrics: dict[str, Any] = {}
        self._staged: dict[str, _Staged] = {}
        self._rejects: list[Reject] = []
        self._reject_counts: dict[str, dict[str, int]] = {}
        self._events: list[Event] = []
        self._indexes: dict[str, list[IndexSpec]] = {}
        self._result: RunResult | None = None

    @property
    def reused(self) -> bool:
        """True when an identical run already finished: nothing is written, its outputs stand."""
        return self.previous is not None

    @property
    def result(self) -> RunResult:
        if self.previous is not None:
            return self.previous
        if self._result is None:
            raise RunStateError(f"run {self.run_id} has not committed yet")
        return self._result

    def _check_writable(self, table: str) -> type[Row]:
        if self.previous is not None:
            raise RunStateError(
                f"run {self.job} already finished as {self.previous.run_id} with the same inputs, "
                "params, seed and code version; use its outputs instead of writing again"
            )
        if self._result is not None:
            raise RunStateError(f"run {self.run_id} is already committed")
        model = DATA_TABLES.get(table)
        if model is None:
            raise UnknownTableError(
                f"unknown table {table!r}; data tables are {sorted(DATA_TABLES)}"
            )
        return model

    def stage_rejects(self, table: str, rejects: list[Reject]) -> None:
        """Stage rows that failed validation (e.g. on Spark executors) for ``rejects``."""
        if not rejects:
            return
        stamped = [r.model_copy(update={"run_id": self.run_id}) for r in rejects]
        self._rejects.extend(stamped)
        counts = self._reject_counts.setdefault(table, {})
        for reject in rejects:
            key = reject.reason.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1

    def _check_stored_schema(self, table: str) -> None:
        recorded = self.lake.log.state.versions.get(table)
        if recorded is None:
            return
        stored = self.lake.store.open(table, version=recorded)
        if stored is not None and stored.schema != DATA_TABLES[table].arrow_schema():
            raise SchemaMismatchError(
                f"table {table!r} is stored with an older schema; run `astra lake migrate {table}`"
            )

    def _prepare(
        self, table: str, data: pa.Table, source: str, check_schema: bool = True
    ) -> tuple[pa.Table, WriteReport]:
        model = self._check_writable(table)
        if check_schema:
            self._check_stored_schema(table)
        if not isinstance(data, pa.Table):
            raise TypeError(f"write {table!r}: expected a pyarrow.Table, got {type(data).__name__}")
        checked = prepare_rows(model, data, source, self.run_id)
        good = checked.good
        self.stage_rejects(table, checked.rejects)
        report = WriteReport(
            table=table,
            rows=good.num_rows,
            rejected=len(checked.rejects),
            reject_reasons=checked.reject_reasons,
            duplicates_skipped=checked.duplicates_skipped,
        )
        return good, report

    def _staged_for(self, table: str, operation: Operation) -> _Staged:
        staged = self._staged.get(table)
        if staged is None:
            staged = self._staged[table] = _Staged(operation=operation)
        elif staged.operation != operation:
            raise RunStateError(
                f"run {self.run_id} already {staged.operation}s to {table!r}; one run writes a "
                "table one way (append or upsert). Split the work into two runs."
            )
        return staged

    def append(self, table: str, data: pa.Table, source: str = "api") -> WriteReport:
        """Validate and stage new rows. Bad rows go to ``rejects``; the rest wait for commit."""
        good, report = self._prepare(table, data, source)
        staged = self._staged_for(table, "append")
        if good.num_rows:
            # Hash on a second thread while Lance writes: both release the GIL.
            with ThreadPoolExecutor(max_workers=1) as pool:
                hashing = pool.submit(staged.hasher.update, good)
                staged.fragments.extend(
                    write_fragments(
                        good,
                        self.lake.store.table_uri(table),
                        schema=good.schema,
                        storage_options=self.lake.store.options(),
                    )
                )
                hashing.result()
        return report

    def append_fragments(
        self, table: str, fragments: list[FragmentMetadata], *, replace: bool = False
    ) -> None:
        """Stage Lance fragments written elsewhere, such as by Spark executors.

        Their rows must already be validated and stamped with this run's id
        (``lake.validation.prepare_rows``) and written with the table's Arrow schema. Their
        content hash is computed from the committed fragments, in the order given. With
        ``replace`` they become the table's whole content (a stage that derives the complete
        table from its inputs); otherwise they are added to it.
        """
        self._check_writable(table)
        if not replace:
            self._check_stored_schema(table)
        staged = self._staged_for(table, "replace" if replace else "append")
        staged.fragments.extend(fragments)
        staged.hash_after_commit = True

    def replace(self, table: str, data: pa.Table, source: str = "api") -> WriteReport:
        """Stage the whole new content of ``table`` (a new version; history keeps the old).

        Rows that already name the run that wrote them keep it: replacing is not re-deriving.
        """
        good, report = self._prepare(table, data, source, check_schema=False)
        if "run_id" in data.column_names and good.num_rows == data.num_rows:
            original = data["run_id"].cast(pa.string())
            keep = pc.coalesce(original, good["run_id"])
            good = good.set_column(good.schema.get_field_index("run_id"), "run_id", keep)
        staged = self._staged_for(table, "replace")
        self._spill(table, staged, good)
        return report

    def _spill(self, table: str, staged: _Staged, good: pa.Table) -> None:
        """Add validated rows to the run's staging dataset for ``table`` (on disk, not RAM)."""
        if not good.num_rows:
            return
        store = self.lake.store
        mode = "append" if staged.staging_uri else "create"
        staged.staging_uri = f"{store.root}/_astra/staging/{self.run_id}/{table}.lance"
        lance.write_dataset(
            good, staged.staging_uri, schema=good.schema, mode=mode, storage_options=store.options()
        )
        staged.hasher.update(good)

    def _staged_rows(self, staged: _Staged, schema: pa.Schema) -> pa.RecordBatchReader:
        if staged.staging_uri is None:
            return pa.RecordBatchReader.from_batches(schema, iter(()))
        dataset = lance.dataset(staged.staging_uri, storage_options=self.lake.store.options())
        return pa.RecordBatchReader.from_batches(schema, dataset.to_batches())

    def _drop_staging(self) -> None:
        store = self.lake.store
        if is_local(store.root):
            shutil.rmtree(Path(store.root) / "_astra" / "staging" / self.run_id, ignore_errors=True)
            return
        for staged in self._staged.values():
            if staged.staging_uri is not None:
                lance.LanceDataset.drop(
                    staged.staging_uri,
                    storage_options=self.lake.store.options(),
                    ignore_not_found=True,
                )

    def quarantine(self, table: str, payload: Any, reason: str, source: str) -> None:
        """Send one input that could not become a row of ``table`` to ``rejects``.

        ``reason`` starts with a short code (``code: detail``) that reports group by.
        """
        self._check_writable(table)
        text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        self.stage_rejects(table, [Reject(table=table, source=source, reason=reason, payload=text)])

    def upsert(self, table: str, data: pa.Table, source: str = "api") -> WriteReport:
        """Validate and stage rows that replace rows of the same id (or are added)."""
        good, report = self._prepare(table, data, source)
        staged = self._staged_for(table, "upsert")
        self._spill(table, staged, good)
        return report

    def create_index(self, table: str, column: str, kind: IndexKind, **options: Any) -> None:
        """Build an index on ``column`` of ``table`` when this run commits.

        The table must be written by this run (write it first). At commit, under the lock,
        the indexes are built on the version the run's rows produced, and the version after
        the last index is the one ``TableCommitted`` records: a read or snapshot of that version
        sees the rows and their indexes together, and a run that dies while indexing leaves
        nothing readable (its versions are rolled back like any uncommitted write). An index
        on a table with no rows is skipped (the run's metrics say so).
        """
        model = self._check_writable(table)
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind {kind!r}: use one of {list(INDEX_KINDS)}")
        if column not in model.arrow_schema().names:
            raise SchemaMismatchError(
                f"table {table!r} has no column {column!r} to index; its columns are "
                f"{model.arrow_schema().names}"
            )
        if table not in self._staged:
            raise RunStateError(
                f"run {self.run_id} indexes {table!r} but has not written it; a run indexes the "
                "version it writes, so write the table in this run first"
            )
        spec = IndexSpec(column, kind, tuple(sorted(options.items())))
        self._indexes.setdefault(table, []).append(spec)

    def _build_indexes(self, commit: Commit) -> Commit:
        """Index the version ``commit`` names; the commit moves to the indexed version."""
        specs = self._indexes.get(commit.table, [])
        if not specs:
            return commit
        report = self.metrics.setdefault("indexes", {})
        if commit.rows_total == 0:
            report[commit.table] = {"skipped": "no rows to index"}
            return commit
        dataset = self.lake.store.open(commit.table)
        assert dataset is not None and dataset.version == commit.version
        for spec in specs:
            options = dict(spec.options)
            if spec.kind == "FTS":
                dataset.create_scalar_index(spec.column, "INVERTED", **options)
            elif spec.kind == "BTREE":
                dataset.create_scalar_index(spec.column, "BTREE", **options)
            else:
                dataset = dataset.create_index(spec.column, "IVF_PQ", **options)
        report[commit.table] = {"version": dataset.version, "built": [s.describe() for s in specs]}
        return Commit(
            table=commit.table,
            version=dataset.version,
            rows_written=commit.rows_written,
            rows_total=commit.rows_total,
            content_hash=commit.content_hash,
        )

    def record(self, event: Event) -> None:
        """Add a fact about this run's outputs (such as curation decisions) to its log commit:
        it is stored with the run's ``TableCommitted`` events, or not at all."""
        if self.reused:
            raise RunStateError(f"run {self.run_id} was reused; it records nothing new")
        self._events.append(dataclasses.replace(event, run_id=self.run_id))

    # -- commit ---------------------------------------------------------------------------

    def commit(self) -> RunResult:
        if self.previous is not None:
            return self.previous
        if self._rejects:
            rejects = Reject.to_arrow(self._rejects)
            staged = self._staged_for("rejects", "append")
            staged.fragments.extend(
                write_fragments(
                    rejects,
                    self.lake.store.table_uri("rejects"),
                    schema=rejects.schema,
                    storage_options=self.lake.store.options(),
                )
            )
            staged.hasher.update(rejects)
        with self.lake.commit_lock():
            events: list[Event] = []
            commits: list[Commit] = []
            for table, staged in self._staged.items():
                commit, repaired = self._commit_table(table, staged)
                commit = self._build_indexes(commit)
                events.extend(repaired)
                commits.append(commit)
                if not repaired and self.lake.log.state.versions.get(table) == commit.version:
                    continue  # nothing written: no new version, nothing to record
                events.append(
                    TableCommitted(
                        run_id=self.run_id,
                        table=commit.table,
                        version=commit.version,
                        rows_written=commit.rows_written,
                        rows_total=commit.rows_total,
                        content_hash=commit.content_hash,
                        operation=staged.operation,
                    )
                )
            for table, reasons in self._reject_counts.items():
                events.append(
                    RowsRejected(
                        run_id=self.run_id,
                        table=table,
                        rows=sum(reasons.values()),
                        reasons=reasons,
                    )
                )
            events.extend(self._events)
            outputs = tuple(TableVersion(c.table, c.version) for c in commits)
            events.append(RunFinished(run_id=self.run_id, metrics=self.metrics, outputs=outputs))
            self.lake.log.append(events)
        self._drop_staging()
        self._result = RunResult(
            run_id=self.run_id,
            job=self.job,
            reused=False,
            commits=tuple(commits),
            metrics=dict(self.metrics),
        )
        return self._result

    def _commit_table(self, table: str, staged: _Staged) -> tuple[Commit, list[Event]]:
        store = self.lake.store
        model = DATA_TABLES[table]
        schema = model.arrow_schema()
        uri = store.table_uri(table)
        recorded = self.lake.log.state.versions.get(table)
        latest = store.open(table)
        repaired: list[Event] = []
        if latest is not None and recorded is not None and latest.version != recorded:
            # A run died between its data commit and its log commit: roll its versions back.
            restored = lance.LanceDataset.commit(
                uri,
                lance.LanceOperation.Restore(recorded),
                storage_options=store.options(),
            )
            repaired.append(
                UncommittedVersionsDiscarded(
                    run_id=self.run_id,
                    table=table,
                    version=restored.version,
                    discarded=tuple(range(recorded + 1, latest.version + 1)),
                )
            )
            latest = restored
        if (
            staged.operation != "replace"
            and latest is not None
            and recorded is not None
            and latest.schema != schema
        ):
            raise SchemaMismatchError(
                f"table {table!r} is stored with an older schema; run `astra lake migrate {table}`"
            )
        fresh = latest is None or recorded is None
        if (
            not fresh
            and not staged.fragments
            and staged.staging_uri is None
            and staged.operation != "replace"
        ):
            assert latest is not None
            empty = ContentHasher()
            return Commit(
                table, latest.version, 0, latest.count_rows(), empty.hexdigest()
            ), repaired
        operation: Any
        if staged.operation == "replace" and staged.staging_uri is None:
            operation = lance.LanceOperation.Overwrite(schema, staged.fragments)
            dataset = lance.LanceDataset.commit(
                uri,
                operation,
                read_version=None if latest is None else latest.version,
                storage_options=store.options(),
            )
        elif staged.operation == "append":
            if fresh:
                operation = lance.LanceOperation.Overwrite(schema, staged.fragments)
                dataset = lance.LanceDataset.commit(uri, operation, storage_options=store.options())
            else:
                assert latest is not None
                dataset = lance.LanceDataset.commit(
                    uri,
                    lance.LanceOperation.Append(staged.fragments),
                    read_version=latest.version,
                    storage_options=store.options(),
                )
        else:
            rows = self._staged_rows(staged, schema)
            if fresh or staged.operation == "replace":
                dataset = lance.write_dataset(
                    rows, uri, schema=schema, mode="overwrite", storage_options=store.options()
                )
            else:
                assert latest is not None
                if staged.staging_uri is not None:
                    (
                        latest.merge_insert("id")
                        .when_matched_update_all()
                        .when_not_matched_insert_all()
                        .execute(rows)
                    )
                dataset = store.open(table)
                assert dataset is not None
        if staged.hash_after_commit:
            keeps_old = not fresh and latest is not None and staged.operation == "append"
            known = (
                {f.fragment_id for f in latest.get_fragments()} if keeps_old and latest else set()
            )
            added = [f for f in dataset.get_fragments() if f.fragment_id not in known]
            for fragment in added:
                staged.hasher.update(fragment.to_table())
        commit = Commit(
            table=table,
            version=dataset.version,
            rows_written=staged.hasher.rows,
            rows_total=dataset.count_rows(),
            content_hash=staged.hasher.hexdigest(),
        )
        return commit, repaired

    def fail(self, exc: BaseException) -> None:
        """Record the failure; staged data files stay unreferenced and are never read."""
        self._drop_staging()
        with self.lake.commit_lock():
            self.lake.log.append(
                [
                    RunFailed(
                        run_id=self.run_id,
                        error_type=type(exc).__name__,
                        error="".join(traceback.format_exception_only(exc)).strip()[:2000],
                    )
                ]
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.previous is not None:
            return
        if exc is not None:
            if isinstance(exc, Exception):
                self.fail(exc)
            return
        if self._result is None:
            self.commit()


def run_key(
    job: str,
    params: Mapping[str, Any],
    seed: int | None,
    code_version: str,
    inputs: tuple[TableVersion, ...],
    fingerprint: str,
) -> str:
    """The identity of a run: the same key means the same outputs, so it runs once."""
    from schemas import canonical_json, content_id

    return content_id(
        "key",
        {
            "job": job,
            "params": canonical_json(params),
            "seed": seed,
            "code_version": code_version,
            "inputs": sorted([i.table, i.version] for i in inputs),
            "fingerprint": fingerprint,
        },
    )
