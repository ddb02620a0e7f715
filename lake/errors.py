"""Errors the lake raises; each message says what was wrong and what to do."""

from __future__ import annotations


class LakeError(Exception):
    """Base of every lake error."""


class TableNotFoundError(LakeError):
    pass


class UnknownTableError(LakeError):
    pass


class SnapshotError(LakeError):
    pass


class SchemaMismatchError(LakeError):
    """A write whose columns cannot be the table's (unknown or missing required columns)."""


class ReadOnlyViewError(LakeError):
    pass


class CommitLockTimeoutError(LakeError):
    pass


class RunStateError(LakeError):
    pass
