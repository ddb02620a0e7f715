"""Quarantined rows: anything that failed validation, with the reason and where it came from."""

from __future__ import annotations

from typing import ClassVar

from schemas.base import Row


class Reject(Row):
    TABLE: ClassVar[str] = "rejects"
    ID_PREFIX: ClassVar[str] = "rej"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("table", "source", "reason", "payload")

    table: str
    source: str
    reason: str
    payload: str
