"""The append-only event log, and the lake state derived from it.

Two verbs, as in any event store: put events (under the commit lock, one Lance commit for the
whole batch, which is what makes a run's outputs appear atomically) and get them. Everything
else, such as current table versions, finished runs and snapshots, is a fold over the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import lance
import pyarrow as pa

from lake.storage import LakeStore
from schemas.events import (
    Event,
    EventRecord,
    RunFailed,
    RunFinished,
    RunStarted,
    SnapshotCreated,
    TableCommitted,
    UncommittedVersionsDiscarded,
    from_record,
    to_record,
)

EVENTS_TABLE = EventRecord.TABLE


@dataclass(frozen=True)
class RunRecord:
    """A run as the log knows it."""

    started: RunStarted
    position: int
    finished: RunFinished | None = None
    failed: RunFailed | None = None
    commits: tuple[TableCommitted, ...] = ()

    @property
    def run_id(self) -> str:
        assert self.started.run_id is not None
        return self.started.run_id

    @property
    def status(self) -> str:
        if self.finished is not None:
            return "finished"
        if self.failed is not None:
            return "failed"
        return "unfinished"


@dataclass
class LakeState:
    """The fold of the log up to ``position``."""

    position: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    committed_versions: dict[str, set[int]] = field(default_factory=dict)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    finished_by_key: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, SnapshotCreated] = field(default_factory=dict)

    def apply(self, position: int, event: Event) -> None:
        self.position = position
        if isinstance(event, RunStarted):
            assert event.run_id is not None
            self.runs[event.run_id] = RunRecord(started=event, position=position)
        elif isinstance(event, TableCommitted):
            self._set_version(event.table, event.version, event.rows_total)
            run = self.runs.get(event.run_id or "")
            if run is not None:
                self.runs[run.run_id] = replace(run, commits=(*run.commits, event))
        elif isinstance(event, UncommittedVersionsDiscarded):
            self.committed_versions.setdefault(event.table, set()).add(event.version)
            self.versions[event.table] = event.version
        elif isinstance(event, RunFinished):
            run = self.runs.get(event.run_id or "")
            if run is not None:
                self.runs[run.run_id] = replace(run, finished=event)
                self.finished_by_key[run.started.run_key] = run.run_id
        elif isinstance(event, RunFailed):
            run = self.runs.get(event.run_id or "")
            if run is not None:
                self.runs[run.run_id] = replace(run, failed=event)
        elif isinstance(event, SnapshotCreated):
            self.snapshots[event.name] = event

    def _set_version(self, table: str, version: int, rows: int) -> None:
        self.versions[table] = version
        self.rows[table] = rows
        self.committed_versions.setdefault(table, set()).add(version)


class EventLog:
    """Reads and appends the ``events`` table of one lake."""

    def __init__(self, store: LakeStore) -> None:
        self._store = store
        self._cached_version: int | None = None
        self._events: list[tuple[int, Event]] = []
        self._state = LakeState()

    def _dataset(self) -> lance.LanceDataset | None:
        return self._store.open(EVENTS_TABLE)

    def refresh(self) -> LakeState:
        """Bring the cached events and state up to the latest log commit."""
        dataset = self._dataset()
        if dataset is None:
            self._cached_version, self._events, self._state = None, [], LakeState()
            return self._state
        if dataset.version == self._cached_version:
            return self._state
        known = self._state.position
        table = dataset.to_table(filter=f"position > {known}") if known else dataset.to_table()
        records = sorted(table.to_pylist(), key=lambda r: r["position"])
        for record in records:
            event = from_record(record)
            self._events.append((record["position"], event))
            self._state.apply(record["position"], event)
        self._cached_version = dataset.version
        return self._state

    @property
    def state(self) -> LakeState:
        return self.refresh()

    def events(self) -> list[tuple[int, Event]]:
        self.refresh()
        return list(self._events)

    def append(self, events: Sequence[Event]) -> list[int]:
        """Append events in one commit. The caller must hold the commit lock."""
        state = self.refresh()
        positions = list(range(state.position + 1, state.position + 1 + len(events)))
        records = [to_record(e, p).model_dump() for e, p in zip(events, positions, strict=True)]
        table = pa.Table.from_pylist(records, schema=EventRecord.arrow_schema())
        dataset = self._dataset()
        uri = self._store.table_uri(EVENTS_TABLE)
        if dataset is None:
            lance.write_dataset(table, uri, mode="create", storage_options=self._store.options())
        else:
            lance.write_dataset(table, uri, mode="append", storage_options=self._store.options())
        self.refresh()
        return positions
