"""Lake events: immutable, past-tense facts, stored one per row in the append-only ``events`` table.

The lake's state is derived from these alone: the current version of a table is the one named
by its latest ``TableCommitted``; a run's outputs become visible only through the single log
commit that holds its ``TableCommitted`` events and its ``RunFinished``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from schemas.base import TableModel

EVENT_SCHEMA_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TableVersion:
    """A table pinned at one version."""

    table: str
    version: int


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. ``table`` and ``version`` are set where the event concerns one."""

    run_id: str | None = None
    time: datetime = field(default_factory=utc_now)
    schema_version: int = EVENT_SCHEMA_VERSION

    table: ClassVar[str | None] = None
    version: ClassVar[int | None] = None

    def payload(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("run_id", "time", "schema_version"):
            data.pop(key)
        return data


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    job: str
    params: dict[str, Any]
    seed: int | None
    code_version: str
    inputs: tuple[TableVersion, ...]
    run_key: str
    fingerprint: str = ""


@dataclass(frozen=True, kw_only=True)
class TableCommitted(Event):
    table: str  # type: ignore[misc]
    version: int  # type: ignore[misc]
    rows_written: int
    rows_total: int
    content_hash: str
    operation: str


@dataclass(frozen=True, kw_only=True)
class RowsRejected(Event):
    table: str  # type: ignore[misc]
    rows: int
    reasons: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class UncommittedVersionsDiscarded(Event):
    """A run died after writing ``discarded`` but before the log recorded it; it was rolled back."""

    table: str  # type: ignore[misc]
    version: int  # type: ignore[misc]
    discarded: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    metrics: dict[str, Any]
    outputs: tuple[TableVersion, ...]


@dataclass(frozen=True, kw_only=True)
class RunFailed(Event):
    error_type: str
    error: str


@dataclass(frozen=True, kw_only=True)
class RowsDeduplicated(Event):
    """Curation decided which rows of ``table`` stay: ``dropped`` ids left the table's new
    version (they remain in its history), ``reasons`` counts them by level (``exact``,
    ``near``, ``semantic``, ``contamination``, or ``parent_dropped`` for rows derived from a
    dropped row); ``kept`` rows stayed."""

    table: str  # type: ignore[misc]
    kept: int
    dropped: tuple[str, ...]
    reasons: dict[str, int]


@dataclass(frozen=True)
class PinnedVersion:
    """A table pinned by a snapshot, with its row count and content hash at that version."""

    table: str
    version: int
    rows: int
    content_hash: str


@dataclass(frozen=True, kw_only=True)
class SnapshotCreated(Event):
    name: str
    description: str
    tables: tuple[PinnedVersion, ...]
    log_position: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        TableCommitted,
        RowsRejected,
        UncommittedVersionsDiscarded,
        RunFinished,
        RunFailed,
        SnapshotCreated,
        RowsDeduplicated,
    )
}


class EventRecord(TableModel):
    """One stored event. ``position`` is the event's place in the log, from 1."""

    TABLE: ClassVar[str] = "events"

    position: int
    type: str
    run_id: str | None
    table: str | None
    version: int | None
    time: datetime
    schema_version: int
    payload: str


def _decode(value: Any, annotation: Any) -> Any:
    text = str(annotation)
    if "TableVersion" in text and isinstance(value, list):
        return tuple(TableVersion(**v) for v in value)
    if "PinnedVersion" in text and isinstance(value, list):
        return tuple(PinnedVersion(**v) for v in value)
    if ("tuple[int" in text or "tuple[str" in text) and isinstance(value, list):
        return tuple(value)
    return value


def to_record(event: Event, position: int) -> EventRecord:
    return EventRecord(
        position=position,
        type=type(event).__name__,
        run_id=event.run_id,
        table=getattr(event, "table", None),
        version=getattr(event, "version", None),
        time=event.time,
        schema_version=event.schema_version,
        payload=json.dumps(event.payload(), sort_keys=True, default=str),
    )


def from_record(record: EventRecord | dict[str, Any]) -> Event:
    """Rebuild the event object from its stored record."""
    if isinstance(record, dict):
        record = EventRecord.model_validate(record)
    cls = EVENT_TYPES.get(record.type)
    if cls is None:
        raise ValueError(f"unknown event type {record.type!r} at position {record.position}")
    payload = json.loads(record.payload)
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs = {k: _decode(v, hints.get(k)) for k, v in payload.items() if k in hints}
    return cls(
        run_id=record.run_id, time=record.time, schema_version=record.schema_version, **kwargs
    )
