"""Reports over pinned lake snapshots: statistics computed from the lake, rendered to files.

Reports only read: each one takes a snapshot name, reads the tables that snapshot pins through
the :class:`lake.Lake`, and writes files (HTML, PNGs, JSON) outside the lake.
"""

from __future__ import annotations


class ReportError(ValueError):
    """A report cannot be built from what the snapshot holds; the message says what to do."""


__all__ = ["ReportError"]
