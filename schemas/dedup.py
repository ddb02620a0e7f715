"""Dedup clusters and benchmark matches: what the dedup jobs found, and what curation drops.

One ``DedupCluster`` row is one group of rows of one source table that one level judged to be
copies of each other (``exact``, ``near`` or ``semantic``): its ``members`` (sorted ids),
the ``representative`` that is kept (the smallest id whose parents stay) and the lowest
similarity that links the group. A ``contamination`` row is one source row that overlaps a
benchmark prompt: its single member is dropped and ``benchmark``/``benchmark_item`` name what
it matched. Rows are never deleted; ``curate`` reads them to write new versions of the curated
tables.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row

DedupLevel = Literal["exact", "near", "semantic", "contamination"]
DEDUP_LEVELS: tuple[DedupLevel, ...] = ("exact", "near", "semantic", "contamination")


class DedupCluster(Row):
    TABLE: ClassVar[str] = "dedup_clusters"
    ID_PREFIX: ClassVar[str] = "dedup"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("level", "source_table", "members", "benchmark_item")

    level: DedupLevel
    source_table: str
    #: The version of ``source_table`` the level read: the members are rows of it.
    source_version: int
    members: list[str]
    size: int
    #: The member that is kept (None for contamination: nothing of it is kept).
    representative: str | None = None
    #: The lowest similarity of a verified link in the cluster (exact: 1.0; near: Jaccard of
    #: shingle sets; semantic: cosine; contamination: share of the row's n-grams matched).
    similarity: float
    #: The normalised-text hash of an exact cluster.
    key: str | None = None
    benchmark: str | None = None
    benchmark_item: str | None = None
    benchmark_text: str | None = None
