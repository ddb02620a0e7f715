"""Decontamination on Spark: word n-gram overlap of lake rows with benchmark prompts.

Each benchmark item's normalised text is cut into word ``ngram``-grams (hashed as the near
level hashes shingles); items shorter than ``ngram`` words are too short to match reliably and
are skipped. The benchmark n-grams (sorted hashes with their items) are broadcast; each row's
n-grams are computed in ``mapInArrow`` and looked up with ``np.searchsorted``, and hits are
counted per (row, item) with numpy, so the pass over the rows has no shuffle. A row is
contaminated when it contains at least ``min_overlap`` of one item's n-grams; the item with
the highest share (then the smallest index) is the match recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.dedup.benchmarks import BenchmarkItem
from jobs.dedup.minhash import shingles
from jobs.dedup.normalize import KEY_COLUMNS, normalize, normalized_keys

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

GRAM_SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False), pa.field("gram", pa.int64(), nullable=False)]
)
"""The distinct n-grams of rows."""


@dataclass(frozen=True)
class Match:
    row_id: str
    benchmark: str
    item_id: str
    overlap: float
    text: str


def row_grams(ids: pa.Array, normalised: pa.Array, ngram: int) -> pa.Table:
    """Distinct ``(id, gram)`` pairs of every row with at least ``ngram`` words."""
    sets = shingles(normalised, ngram)
    words = pc.fill_null(pc.list_value_length(pc.utf8_split_whitespace(normalised)), 0)
    long_enough = np.asarray(words.to_numpy(zero_copy_only=False)) >= ngram
    owner = np.repeat(np.arange(len(ids)), sets.sizes)
    keep = long_enough[owner]
    table = pa.table(
        {
            "id": ids.take(pa.array(owner[keep])),
            "gram": pa.array(sets.hashes[keep].view(np.int64)),
        },
        schema=GRAM_SCHEMA,
    )
    return table.group_by(["id", "gram"]).aggregate([]).select(["id", "gram"])


@dataclass(frozen=True)
class GramIndex:
    """Benchmark n-grams sorted by hash, with the item each belongs to, and item sizes."""

    grams: np.ndarray
    items: np.ndarray
    sizes: np.ndarray


def benchmark_index(items: Sequence[BenchmarkItem], ngram: int) -> GramIndex:
    """The n-grams of every item with at least ``ngram`` words (each item's set once)."""
    index = pa.array([str(i) for i in range(len(items))], pa.string())
    grams = row_grams(index, normalize([i.text for i in items]), ngram)
    owner = grams["id"].to_numpy(zero_copy_only=False).astype(np.int64)
    hashes = grams["gram"].to_numpy()
    order = np.lexsort((owner, hashes))
    sizes = np.bincount(owner, minlength=len(items))
    return GramIndex(hashes[order], owner[order], sizes)


def match_rows(
    ids: pa.Array, normalised: pa.Array, index: GramIndex, ngram: int, min_overlap: float
) -> pa.Table:
    """``(id, item, overlap)`` of the rows containing ``min_overlap`` of an item's n-grams (the
    best item per row: highest share, then lowest index), vectorised with numpy."""
    grams = row_grams(ids, normalised, ngram)
    empty = pa.table(
        {
            "id": pa.array([], pa.string()),
            "item": pa.array([], pa.int64()),
            "overlap": pa.array([], pa.float64()),
        }
    )
    if grams.num_rows == 0 or len(index.grams) == 0:
        return empty
    row_ids, row_index = np.unique(grams["id"].to_numpy(zero_copy_only=False), return_inverse=True)
    hashes = grams["gram"].to_numpy()
    lo = np.searchsorted(index.grams, hashes, side="left")
    hi = np.searchsorted(index.grams, hashes, side="right")
    counts = hi - lo
    if not counts.any():
        return empty
    rows = np.repeat(row_index, counts)
    # Positions lo..hi-1 of every matched gram, without a Python loop.
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    items = index.items[starts + np.arange(len(rows))]
    pair = rows.astype(np.int64) * len(index.sizes) + items
    unique_pairs, hits = np.unique(pair, return_counts=True)
    pair_rows, pair_items = np.divmod(unique_pairs, len(index.sizes))
    overlap = hits / index.sizes[pair_items]
    keep = overlap >= min_overlap
    pair_rows, pair_items, overlap = pair_rows[keep], pair_items[keep], overlap[keep]
    order = np.lexsort((pair_items, -overlap, pair_rows))
    pair_rows, pair_items, overlap = pair_rows[order], pair_items[order], overlap[order]
    first = np.ones(len(pair_rows), dtype=bool)
    first[1:] = pair_rows[1:] != pair_rows[:-1]
    return pa.table(
        {
            "id": pa.array(row_ids[pair_rows[first]].astype(str), pa.string()),
            "item": pa.array(pair_items[first], pa.int64()),
            "overlap": pa.array(overlap[first], pa.float64()),
        }
    )


MATCH_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("item", pa.int64(), nullable=False),
        pa.field("overlap", pa.float64(), nullable=False),
    ]
)


def _match_partition(
    batches: Iterator[pa.RecordBatch], *, table: str, ngram: int, min_overlap: float, index: Any
) -> Iterator[pa.RecordBatch]:
    gram_index: GramIndex = index.value
    for batch in batches:
        if batch.num_rows:
            rows = pa.Table.from_batches([batch])
            keys = normalized_keys(table, rows)
            found = match_rows(rows["id"].combine_chunks(), keys, gram_index, ngram, min_overlap)
            yield from found.cast(MATCH_SCHEMA).to_batches()


def contaminated(
    spark: SparkSession,
    frames: dict[str, DataFrame],
    items: Sequence[BenchmarkItem],
    ngram: int,
    min_overlap: float,
) -> list[Match]:
    """Rows of ``frames`` (``{table: frame}``, one Spark plan) that contain ``min_overlap`` of
    some benchmark item's n-grams, with the best item. The benchmark index is broadcast and
    matched inside ``mapInArrow``: one pass over the rows, no shuffle."""
    from functools import reduce

    from pyspark.sql import DataFrame as SparkFrame

    from jobs.spark import spark_schema

    if not frames:
        return []
    index = spark.sparkContext.broadcast(benchmark_index(items, ngram))
    try:
        found = reduce(
            SparkFrame.unionByName,
            [
                frame.select(*KEY_COLUMNS[table]).mapInArrow(
                    partial(
                        _match_partition,
                        table=table,
                        ngram=ngram,
                        min_overlap=min_overlap,
                        index=index,
                    ),
                    spark_schema(MATCH_SCHEMA),
                )
                for table, frame in frames.items()
            ],
        ).collect()
    finally:
        index.unpersist()
    matches = []
    for row in found:
        item = items[int(row["item"])]
        matches.append(
            Match(row["id"], item.benchmark, item.item_id, float(row["overlap"]), item.text)
        )
    return sorted(matches, key=lambda m: m.row_id)
