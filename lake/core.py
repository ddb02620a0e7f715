"""The ``Lake``: the only way to read and write ASTRA Lake tables."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from lake.errors import SnapshotError, TableNotFoundError, UnknownTableError
from lake.eventlog import EventLog, LakeState, RunRecord
from lake.locking import CommitLock
from lake.run import Commit, Run, RunResult, WriteReport, new_run_id, run_key
from lake.storage import LakeStore
from lake.views import TableView
from schemas import DATA_TABLES, SYSTEM_TABLES, TableModel
from schemas.events import (
    Event,
    PinnedVersion,
    RunStarted,
    SnapshotCreated,
    TableVersion,
)
from schemas.snapshots import SNAPSHOT_NAME, PinnedTable, SnapshotRecord

LAKE_CODE_VERSION = "1"
SNAPSHOT_TAG_PREFIX = "snapshot-"


@dataclass(frozen=True)
class TableInfo:
    table: str
    version: int | None
    rows: int


@dataclass(frozen=True)
class TableDiff:
    table: str
    version_a: int | None
    version_b: int | None
    added: int
    removed: int


def _result_of(record: RunRecord) -> RunResult:
    assert record.finished is not None
    return RunResult(
        run_id=record.run_id,
        job=record.started.job,
        reused=True,
        commits=tuple(
            Commit(c.table, c.version, c.rows_written, c.rows_total, c.content_hash)
            for c in record.commits
        ),
        metrics=dict(record.finished.metrics),
    )


class Lake:
    """An event-sourced, versioned lake of Lance tables.

    ``Lake("astra-lake")`` opens (or starts) a lake in a local folder; any URI LanceDB accepts
    works, with ``storage_options`` for its object store. Reads return read-only ``TableView``
    objects pinned at a committed version; writes go through runs (``lake.run(...)``), or
    through ``append``/``upsert``, which wrap one write in a run of their own.
    """

    def __init__(
        self,
        uri: str | Path = "astra-lake",
        storage_options: Mapping[str, str] | None = None,
        lock_dir: Path | None = None,
        lock_timeout_s: float = 300.0,
    ) -> None:
        self.store = LakeStore.at(uri, dict(storage_options or {}), lock_dir)
        self.log = EventLog(self.store)
        self._lock_timeout_s = lock_timeout_s

    @property
    def uri(self) -> str:
        return self.store.root

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        with CommitLock(self.store.lock_path, self._lock_timeout_s):
            yield

    @property
    def state(self) -> LakeState:
        return self.log.refresh()

    # -- writing ---------------------------------------------------------------------------

    def run(
        self,
        job: str,
        params: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        code_version: str = LAKE_CODE_VERSION,
        inputs: Mapping[str, int] | None = None,
        fingerprint: str = "",
        idempotent: bool = True,
    ) -> Run:
        """Start a run. If an identical run (same key) already finished, the returned run is
        ``reused`` and carries that run's outputs; nothing new is written.

        ``inputs`` maps each input table to the version the run reads; ``fingerprint`` adds
        anything else the output depends on (such as the hash of an external source file).
        """
        params = dict(params or {})
        pinned = tuple(TableVersion(t, v) for t, v in sorted((inputs or {}).items()))
        key = run_key(job, params, seed, code_version, pinned, fingerprint)
        if not idempotent:
            key = f"{key}.{secrets.token_hex(4)}"
        state = self.state
        finished = state.finished_by_key.get(key)
        if finished is not None:
            return Run(self, finished, job, key, previous=_result_of(state.runs[finished]))
        run_id = new_run_id()
        started = RunStarted(
            run_id=run_id,
            job=job,
            params=params,
            seed=seed,
            code_version=code_version,
            inputs=pinned,
            run_key=key,
            fingerprint=fingerprint,
        )
        with self.commit_lock():
            self.log.append([started])
        return Run(self, run_id, job, key)

    def _single_write(self, table: str, data: pa.Table, source: str, upsert: bool) -> WriteResult:
        with self.run(
            f"lake.{'upsert' if upsert else 'append'}",
            {"table": table, "source": source},
            idempotent=False,
        ) as run:
            report = run.upsert(table, data, source) if upsert else run.append(table, data, source)
        commit = run.result.commit_for(table)
        assert commit is not None
        return WriteResult(commit=commit, report=report, run_id=run.run_id)

    def append(self, table: str, data: pa.Table, source: str = "api") -> WriteResult:
        """Append rows as one run. Invalid rows go to ``rejects``; the result reports both."""
        return self._single_write(table, data, source, upsert=False)

    def upsert(self, table: str, data: pa.Table, source: str = "api") -> WriteResult:
        """Insert rows, replacing existing rows with the same id, as one run."""
        return self._single_write(table, data, source, upsert=True)

    def migrate(self, table: str) -> WriteResult:
        """Rewrite ``table`` at the current schema version (rows upcast), as a new version."""
        view = self.read(table)
        with self.run("lake.migrate", {"table": table}, inputs={table: view.version}) as run:
            report = run.replace(table, view.to_arrow(), source=f"migrate of {table}")
        commit = run.result.commit_for(table)
        assert commit is not None
        return WriteResult(commit=commit, report=report, run_id=run.run_id)

    # -- reading ---------------------------------------------------------------------------

    def _model(self, table: str) -> type[TableModel]:
        model = DATA_TABLES.get(table) or SYSTEM_TABLES.get(table)
        if model is None:
            raise UnknownTableError(f"unknown table {table!r}; tables are {sorted(DATA_TABLES)}")
        return model

    def resolve_version(
        self,
        table: str,
        version: int | None = None,
        tag: str | None = None,
        snapshot: str | None = None,
    ) -> int:
        """The committed version a read should see."""
        if sum(x is not None for x in (version, tag, snapshot)) > 1:
            raise ValueError("read at most one of version=, tag= or snapshot=")
        self._model(table)
        state = self.state
        if snapshot is not None:
            pinned = self.snapshot(snapshot).version_of(table)
            if pinned is None:
                raise TableNotFoundError(f"snapshot {snapshot!r} has no table {table!r}")
            return pinned
        if tag is not None:
            dataset = self.store.open(table)
            if dataset is None:
                raise TableNotFoundError(f"table {table!r} has never been written")
            try:
                version = dataset.tags.get_version(tag)
            except (ValueError, KeyError) as exc:
                raise TableNotFoundError(f"table {table!r} has no tag {tag!r}") from exc
        if version is not None:
            if version not in state.committed_versions.get(table, set()):
                known = sorted(state.committed_versions.get(table, set()))
                raise TableNotFoundError(
                    f"version {version} of {table!r} was never committed by a finished run; "
                    f"committed versions: {known}"
                )
            return version
        current = state.versions.get(table)
        if current is None:
            raise TableNotFoundError(
                f"table {table!r} has no committed data yet; write it or run the job that "
                "produces it (see `astra lake tables`)"
            )
        return current

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        tag: str | None = None,
        snapshot: str | None = None,
    ) -> TableView:
        """A read-only view of ``table`` at the latest committed version, or a pinned one."""
        if table == "events":
            raise UnknownTableError("read the log with lake.events(), not lake.read('events')")
        resolved = self.resolve_version(table, version, tag, snapshot)
        dataset = self.store.open(table, version=resolved)
        assert dataset is not None
        return TableView(table=table, version=resolved, model=self._model(table), dataset=dataset)

    def tables(self) -> list[TableInfo]:
        state = self.state
        return [
            TableInfo(name, state.versions.get(name), state.rows.get(name, 0))
            for name in DATA_TABLES
        ]

    def events(
        self, table: str | None = None, run_id: str | None = None
    ) -> list[tuple[int, Event]]:
        """The log, optionally narrowed to one run, or to one table: events about the table
        and every event of the runs that read or wrote it."""
        events = self.log.events()
        related: set[str] = set()
        if table is not None:
            for _, event in events:
                touches = getattr(event, "table", None) == table or (
                    isinstance(event, RunStarted) and any(i.table == table for i in event.inputs)
                )
                if touches and event.run_id:
                    related.add(event.run_id)
        out = []
        for position, event in events:
            if table is not None:
                pins = isinstance(event, SnapshotCreated) and any(
                    p.table == table for p in event.tables
                )
                if not (getattr(event, "table", None) == table or event.run_id in related or pins):
                    continue
            if run_id is not None and event.run_id != run_id:
                continue
            out.append((position, event))
        return out

    def runs(self) -> list[RunRecord]:
        return sorted(self.state.runs.values(), key=lambda r: r.position)

    def get_run(self, run_id: str) -> RunRecord:
        record = self.state.runs.get(run_id)
        if record is None:
            raise KeyError(f"no run {run_id!r} in this lake; list runs with `astra lake runs`")
        return record

    # -- snapshots -------------------------------------------------------------------------

    def create_snapshot(self, name: str, description: str = "") -> SnapshotRecord:
        """Pin the current version of every written table under ``name``, for good."""
        if not SNAPSHOT_NAME.match(name):
            raise SnapshotError(
                f"snapshot name {name!r} is invalid: use letters, digits, '.', '_' or '-' "
                "(at most 64, starting with a letter or digit)"
            )
        with self.commit_lock():
            state = self.log.refresh()
            if name in state.snapshots:
                raise SnapshotError(
                    f"snapshot {name!r} already exists and snapshots are immutable; "
                    "choose a new name"
                )
            pinned = []
            for table, version in sorted(state.versions.items()):
                view = self.read(table, version=version)
                pinned.append(PinnedVersion(table, version, view.count_rows(), view.content_hash()))
                tag = SNAPSHOT_TAG_PREFIX + name
                tags = view.dataset.tags.list()
                if tag in tags:
                    view.dataset.tags.update(tag, version)
                else:
                    view.dataset.tags.create(tag, version)
            event = SnapshotCreated(
                name=name,
                description=description,
                tables=tuple(pinned),
                log_position=state.position,
            )
            self.log.append([event])
        return self.snapshot(name)

    def snapshots(self) -> list[SnapshotRecord]:
        return [_snapshot_record(e) for e in self.state.snapshots.values()]

    def snapshot(self, name: str) -> SnapshotRecord:
        event = self.state.snapshots.get(name)
        if event is None:
            known = sorted(self.state.snapshots)
            raise SnapshotError(f"no snapshot {name!r}; snapshots: {known or 'none yet'}")
        return _snapshot_record(event)

    def diff_snapshots(self, a: str, b: str) -> list[TableDiff]:
        """Rows added and removed per table between snapshots ``a`` and ``b`` (by row id)."""
        snap_a, snap_b = self.snapshot(a), self.snapshot(b)
        names = sorted({p.table for p in snap_a.tables} | {p.table for p in snap_b.tables})
        diffs = []
        for table in names:
            va, vb = snap_a.version_of(table), snap_b.version_of(table)
            ids_a = self._ids(table, va)
            ids_b = self._ids(table, vb)
            diffs.append(TableDiff(table, va, vb, len(ids_b - ids_a), len(ids_a - ids_b)))
        return diffs

    def _ids(self, table: str, version: int | None) -> set[str]:
        if version is None:
            return set()
        return set(self.read(table, version=version).to_arrow(columns=["id"])["id"].to_pylist())

    # -- lineage and query -------------------------------------------------------------------

    def find_row(self, row_id: str, snapshot: str | None = None) -> tuple[str, dict[str, Any]]:
        """The table and current content of a row, found by the table prefix of its id."""
        from schemas import table_of_row_id

        table = table_of_row_id(row_id)
        if table is None:
            raise KeyError(f"{row_id!r} is not a row id of any lake table")
        try:
            row = self.read(table, snapshot=snapshot).row(row_id)
        except TableNotFoundError:
            row = None
        if row is None:
            raise KeyError(f"row {row_id!r} is not in table {table!r}")
        return table, row

    def sql_context(self, snapshot: str | None = None) -> pl.SQLContext:
        """A polars SQL context with every written table (at ``snapshot`` if given),
        plus ``events``, ``runs`` and ``snapshots``."""
        context = pl.SQLContext()
        pinned = self.snapshot(snapshot) if snapshot else None
        for info in self.tables():
            if pinned is not None:
                version = pinned.version_of(info.table)
                if version is None:
                    continue
                context.register(info.table, self.read(info.table, version=version).to_polars())
            elif info.version is not None:
                context.register(info.table, self.read(info.table).to_polars())
        context.register("events", self._events_frame().lazy())
        context.register("runs", self._runs_frame().lazy())
        context.register("snapshots", self._snapshots_frame().lazy())
        return context

    def query(self, sql: str, snapshot: str | None = None) -> pl.DataFrame:
        """Run polars SQL over the lake's tables."""
        return self.sql_context(snapshot).execute(sql, eager=True)

    def _events_frame(self) -> pl.DataFrame:
        from schemas.events import EventRecord, to_record

        rows = [to_record(e, p).model_dump() for p, e in self.log.events()]
        return pl.from_arrow(pa.Table.from_pylist(rows, schema=EventRecord.arrow_schema()))  # type: ignore[return-value]

    def _runs_frame(self) -> pl.DataFrame:
        rows = [
            {
                "run_id": r.run_id,
                "job": r.started.job,
                "status": r.status,
                "seed": r.started.seed,
                "started_at": r.started.time,
                "ended_at": (r.finished or r.failed).time if (r.finished or r.failed) else None,
                "outputs": [f"{c.table}@{c.version}" for c in r.commits],
            }
            for r in self.runs()
        ]
        schema = {
            "run_id": pl.String,
            "job": pl.String,
            "status": pl.String,
            "seed": pl.Int64,
            "started_at": pl.Datetime("us", "UTC"),
            "ended_at": pl.Datetime("us", "UTC"),
            "outputs": pl.List(pl.String),
        }
        return pl.DataFrame(rows, schema=schema)

    def _snapshots_frame(self) -> pl.DataFrame:
        records = [s.to_record() for s in self.snapshots()]
        return pl.from_arrow(pa.Table.from_pylist(records, schema=SnapshotRecord.arrow_schema()))  # type: ignore[return-value]


@dataclass(frozen=True)
class WriteResult:
    """A committed single write: the commit, what was accepted and rejected, and its run."""

    commit: Commit
    report: WriteReport
    run_id: str

    @property
    def version(self) -> int:
        return self.commit.version

    @property
    def rows(self) -> int:
        return self.report.rows

    @property
    def rejected(self) -> int:
        return self.report.rejected


def _snapshot_record(event: SnapshotCreated) -> SnapshotRecord:
    return SnapshotRecord(
        name=event.name,
        created_at=event.time,
        description=event.description,
        log_position=event.log_position,
        tables=[PinnedTable(**vars(p)) for p in event.tables],
    )
