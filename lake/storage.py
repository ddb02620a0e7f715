"""Where a lake's Lance datasets live: a local folder or any object-store URI LanceDB accepts.

Each table is one Lance dataset at ``<root>/<table>.lance``, the layout LanceDB uses, so
``lancedb.connect(root).open_table(name)`` sees the same tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import lance

DEFAULT_LOCK_ROOT = Path.home() / ".cache" / "astra" / "locks"


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


@dataclass(frozen=True)
class LakeStore:
    """The lake's root URI, the options its object store needs, and its commit-lock file."""

    root: str
    storage_options: dict[str, str] = field(default_factory=dict)
    lock_dir: Path | None = None

    @classmethod
    def at(
        cls,
        uri: str | Path,
        storage_options: dict[str, str] | None = None,
        lock_dir: Path | None = None,
    ) -> LakeStore:
        root = str(uri)
        if is_local(root):
            path = Path(root.removeprefix("file://")).expanduser().resolve()
            root = str(path)
        return cls(
            root=root.rstrip("/"), storage_options=dict(storage_options or {}), lock_dir=lock_dir
        )

    @property
    def lock_path(self) -> Path:
        # A local lake keeps its lock inside itself; an object-store lake keeps it on this host
        # (see the README: writers of one object-store lake must share a lock directory).
        if self.lock_dir is not None:
            digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
            return self.lock_dir / f"{digest}.lock"
        if is_local(self.root):
            return Path(self.root) / "_astra" / "commit.lock"
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        return DEFAULT_LOCK_ROOT / f"{digest}.lock"

    def table_uri(self, table: str) -> str:
        return f"{self.root}/{table}.lance"

    def options(self) -> dict[str, str] | None:
        return self.storage_options or None

    def open(self, table: str, version: int | str | None = None) -> lance.LanceDataset | None:
        """The dataset at ``version`` (latest when None); None if the table was never created."""
        try:
            return lance.dataset(
                self.table_uri(table), version=version, storage_options=self.options()
            )
        except ValueError as exc:
            if version is None and "was not found" in str(exc):
                return None
            raise
