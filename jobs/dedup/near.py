"""Near-duplicates on Spark: MinHash signatures, LSH buckets, verified pairs, components.

1. ``jobs.spark.map_table`` over each pinned table (slices of its fragments, at least one per
   core): the task that reads an Arrow batch of the key columns normalises, shingles and
   signs it with numpy (``jobs.dedup.minhash``) inside ``mapInArrow``. Every row becomes one
   ``(bucket, row)`` pair of int64s per band: the bucket is the band's key (mixed with the
   band number and the table), ``row`` the row's key (``row_keys``: its table's number and
   its position in the pinned version). A task groups its pairs by the shuffle partition of
   their bucket and sends each group as one binary block of 16-byte pairs, so the shuffle
   moves a few large rows per task instead of one Spark row per pair (turning 14 pairs per
   text into Spark rows and sorting them in the JVM was most of the cost), and the shingle
   sets stay out of it.
2. One shuffle of the blocks by partition label; each reduce task concatenates its blocks,
   sorts the pairs by bucket with numpy and forms the candidate pairs of the buckets with two
   or more rows (every pair; a bucket larger than ``max_bucket`` links its members to its
   smallest row key only, a star that bounds the quadratic blow-up of a very common band
   value while components still join), dropping pairs already seen there.
3. The candidate pairs come to the driver, which reads back the candidates' rows only (by
   position, ``TableView.take``), and verifies every pair by the exact Jaccard similarity of
   the two shingle sets, vectorised (the sets of a block of pairs are concatenated, sorted and
   equal neighbours counted). Verified edges (Jaccard at or above the threshold) go to
   union-find for the connected components.

Several tables go through one plan (a per-table salt keeps their buckets apart), so the fixed
cost of a Spark job is paid once: one job of two stages, whatever the number of tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from jobs.dedup.minhash import band_keys, shingles, signatures
from jobs.dedup.normalize import KEY_COLUMNS, normalized_keys, tokenizable
from jobs.spark import POSITION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake import TableView

BLOCK_SCHEMA = pa.schema(
    [
        # The shuffle partition's label (``partition_labels``).
        pa.field("part", pa.int64(), nullable=False),
        # (bucket, row) pairs of that partition: little-endian int64s, bucket first.
        pa.field("pairs", pa.binary(), nullable=False),
    ]
)
PAIR_SCHEMA = pa.schema(
    [pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.int64(), nullable=False)]
)
# Pairs verified at once: their members' keys, about 35 per pair, sorted together (~70 MB).
PAIR_BLOCK = 250_000
BUCKET_ROWS_PER_PARTITION = 1_000_000
# A task sends its pairs once it holds this many (16 MB), so its memory stays bounded.
BLOCK_PAIRS = 1_000_000
# Rows per Arrow batch read for the signatures: only the key columns are read.
READ_ROWS = 8192
# Candidate rows read back per block on the driver.
TAKE_ROWS = 32_768
# A row key: its table's number above bit 48, its position below (2^48 rows a table).
SOURCE_SHIFT = 48
POSITION_MASK = np.int64((1 << SOURCE_SHIFT) - 1)


@dataclass(frozen=True)
class MinHashSettings:
    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int


def _salt(source: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(source.encode(), digest_size=8).digest()))


def row_keys(source: int, positions: np.ndarray) -> np.ndarray:
    """Rows' keys: the number of their table in the plan above their positions in its pinned
    version, so a key is unique and names the row to read back (``TableView.take``).

    >>> row_keys(1, np.array([0, 5])).tolist()
    [281474976710656, 281474976710661]
    >>> key = row_keys(1, np.array([5]))
    >>> (key >> SOURCE_SHIFT).tolist(), (key & POSITION_MASK).tolist()
    ([1], [5])
    """
    return (np.int64(source) << np.int64(SOURCE_SHIFT)) | positions.astype(np.int64)


def bucket_rows(
    table: str, batch: pa.RecordBatch | pa.Table, settings: MinHashSettings, source: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(buckets, rows)``: one int64 pair per band of every row of ``batch`` (its key columns
    and ``POSITION``) with any text, the row as its key (``row_keys``; ``source`` is the
    table's number in the plan)."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    keys = tokenizable(table, normalized_keys(table, rows))
    sets = shingles(keys, settings.ngram)
    bands = band_keys(
        signatures(sets, settings.num_perm, settings.seed), settings.bands, settings.rows
    )
    keep = np.flatnonzero(sets.sizes > 0)
    owner = np.repeat(keep, settings.bands)
    buckets = (bands[keep].reshape(-1).view(np.uint64) ^ _salt(table)).view(np.int64)
    return buckets, row_keys(source, rows[POSITION].to_numpy())[owner]


def partition_labels(spark: SparkSession, partitions: int) -> list[int]:
    """One ``part`` value per shuffle partition: ``labels[p]`` lands in partition ``p`` when a
    frame is ``repartition(partitions, "part")``-ed.

    Spark places a row in partition ``pmod(hash(part), partitions)`` (the Murmur3 hash that
    ``HashPartitioning`` uses); the labels are the first integers that fill every partition,
    found by evaluating that same expression, so no partition gets two blocks' worth of
    buckets while another idles.
    """
    known = _LABELS.get((spark.sparkContext.applicationId, partitions))
    if known is not None:
        return known
    labels: dict[int, int] = {}
    span = 64 * partitions
    while len(labels) < partitions:
        found = (
            spark.range(0, span).selectExpr("id", f"pmod(hash(id), {partitions}) AS p").toArrow()
        )
        for label, part in zip(found["id"].to_pylist(), found["p"].to_pylist(), strict=True):
            labels.setdefault(part, label)
        span *= 4
    found_labels = [labels[p] for p in range(partitions)]
    _LABELS[(spark.sparkContext.applicationId, partitions)] = found_labels
    return found_labels


_LABELS: dict[tuple[str, int], list[int]] = {}


def _blocks(buckets: np.ndarray, rows: np.ndarray, labels: list[int]) -> pa.RecordBatch:
    """The pairs grouped by partition (``bucket mod partitions``), one binary block each."""
    part = buckets.view(np.uint64) % np.uint64(len(labels))
    order = np.argsort(part, kind="stable")
    pairs = np.stack([buckets[order], rows[order]], axis=1).astype("<i8")
    cuts = np.searchsorted(part[order], np.arange(len(labels) + 1, dtype=np.uint64))
    present = [p for p in range(len(labels)) if cuts[p + 1] > cuts[p]]
    return pa.RecordBatch.from_arrays(
        [
            pa.array([labels[p] for p in present], pa.int64()),
            pa.array([pairs[cuts[p] : cuts[p + 1]].tobytes() for p in present], pa.binary()),
        ],
        schema=BLOCK_SCHEMA,
    )


def _bucket_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    table: str,
    source: int,
    settings: MinHashSettings,
    labels: list[int],
) -> Iterator[pa.RecordBatch]:
    held: list[tuple[np.ndarray, np.ndarray]] = []
    count = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        held.append(bucket_rows(table, batch, settings, source))
        count += len(held[-1][0])
        if count >= BLOCK_PAIRS:
            yield _blocks(*(np.concatenate(part) for part in zip(*held, strict=True)), labels)
            held, count = [], 0
    if count:
        yield _blocks(*(np.concatenate(part) for part in zip(*held, strict=True)), labels)


def candidate_pairs(buckets: np.ndarray, rows: np.ndarray, max_bucket: int) -> np.ndarray:
    """Distinct ``(a, b)`` row-key pairs, ``a < b``, of the rows that share a bucket: every
    pair of a bucket of at most ``max_bucket`` rows, and a star for a larger one (each member
    linked to its smallest row key).

    >>> buckets = np.array([7, 5, 7, 5, 9, 7, 7])
    >>> rows = np.array([4, 1, 3, 2, 8, 5, 6])
    >>> candidate_pairs(buckets, rows, max_bucket=3).tolist()
    [[1, 2], [3, 4], [3, 5], [3, 6]]
    >>> candidate_pairs(buckets, rows, max_bucket=4).tolist()
    [[1, 2], [3, 4], [3, 5], [3, 6], [4, 5], [4, 6], [5, 6]]
    """
    order = np.lexsort((rows, buckets))
    buckets, rows = buckets[order], rows[order]
    n = len(buckets)
    starts = np.flatnonzero(np.concatenate([[True], buckets[1:] != buckets[:-1]]))
    lengths = np.diff(np.concatenate([starts, [n]]))
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    # Buckets of one length at a time: one index pattern, broadcast over all their starts.
    for length in np.unique(lengths[lengths > 1]).tolist():
        first = starts[lengths == length][:, None]
        if length <= max_bucket:
            i, j = np.triu_indices(length, 1)
        else:
            # Rows are sorted within a bucket: its first is its smallest key.
            j = np.arange(1, length)
            i = np.zeros_like(j)
        left.append((first + i).ravel())
        right.append((first + j).ravel())
    if not left:
        return np.zeros((0, 2), dtype=np.int64)
    a, b = rows[np.concatenate(left)], rows[np.concatenate(right)]
    differ = a != b
    keys, first, second = distinct_pairs(np.minimum(a, b)[differ], np.maximum(a, b)[differ])
    return np.stack([keys[first], keys[second]], axis=1)


def distinct_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted distinct values of ``a`` and ``b``, and every distinct pair
    ``(a[k], b[k])`` once, in sorted order, as two arrays of indices into those values.

    Pairs become one int64 each (dense indices, fewer than 2^31 values) so a flat sort finds
    the repeats: ``np.unique(axis=0)`` sorts row views, and numpy 2.4's flat ``np.unique``
    hashes, both an order of magnitude slower at millions of pairs.

    >>> keys, i, j = distinct_pairs(np.array([9, 5, 9, 5]), np.array([7, 9, 7, 7]))
    >>> keys.tolist(), list(zip(keys[i].tolist(), keys[j].tolist()))
    ([5, 7, 9], [(5, 7), (5, 9), (9, 7)])
    """
    keys, dense = np.unique(np.concatenate([a, b]), return_inverse=True)
    dense = dense.astype(np.int64)
    packed = np.sort((dense[: len(a)] << np.int64(32)) | dense[len(a) :])
    packed = packed[np.concatenate([[True], packed[1:] != packed[:-1]])] if len(packed) else packed
    return keys, packed >> np.int64(32), packed & np.int64(0xFFFFFFFF)


def _pair_partition(
    batches: Iterator[pa.RecordBatch], *, max_bucket: int
) -> Iterator[pa.RecordBatch]:
    # Each batch's blocks lie back to back in its binary column's data buffer: read them in
    # place (no Python bytes per block).
    parts = []
    for batch in batches:
        column = batch.column("pairs")
        if not len(column):
            continue
        ends = np.frombuffer(column.buffers()[1], dtype=np.int32)
        first, last = int(ends[column.offset]), int(ends[column.offset + len(column)])
        data = column.buffers()[2]
        parts.append(np.frombuffer(data, dtype="<i8", count=(last - first) // 8, offset=first))
    if not parts:
        return
    pairs = np.concatenate(parts).reshape(-1, 2)
    found = candidate_pairs(pairs[:, 0].copy(), pairs[:, 1].copy(), max_bucket)
    if len(found):
        yield pa.RecordBatch.from_arrays(
            [pa.array(found[:, 0]), pa.array(found[:, 1])], schema=PAIR_SCHEMA
        )


def shingle_sets(
    views: Mapping[str, TableView], keys: np.ndarray, ngram: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ids and distinct shingle sets (``offsets``, ``values``) of the rows of ``keys``
    (sorted), read back from the pinned views in blocks of ``TAKE_ROWS``."""
    ids: list[str] = []
    sizes: list[np.ndarray] = []
    values: list[np.ndarray] = []
    sources = keys >> np.int64(SOURCE_SHIFT)
    for source, (table, view) in enumerate(views.items()):
        positions = keys[sources == source] & POSITION_MASK
        for start in range(0, len(positions), TAKE_ROWS):
            rows = view.take(positions[start : start + TAKE_ROWS], columns=KEY_COLUMNS[table])
            distinct = shingles(tokenizable(table, normalized_keys(table, rows)), ngram).distinct()
            ids += rows["id"].to_pylist()
            sizes.append(distinct.sizes)
            values.append(distinct.hashes.view(np.int64))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]).astype(np.int64)
    return ids, offsets, np.concatenate(values)


def jaccard_of_pairs(
    offsets: np.ndarray, members: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray
) -> np.ndarray:
    """Exact Jaccard of the (distinct, per row) sets of every pair ``(rows_a[k], rows_b[k])``;
    ``members`` are small non-negative integers (dense ids of the shingle hashes).

    Each member is keyed by its pair's number above its own bits; one sort of those keys puts
    a member that both sets of a pair hold next to itself.

    >>> offsets, members = np.array([0, 3, 5, 6]), np.array([1, 2, 3, 2, 3, 9])
    >>> jaccard_of_pairs(offsets, members, np.array([0, 0]), np.array([1, 2])).tolist()
    [0.6666666666666666, 0.0]
    """
    sizes_a = offsets[rows_a + 1] - offsets[rows_a]
    sizes_b = offsets[rows_b + 1] - offsets[rows_b]
    shift = max(int(members.max(initial=0)).bit_length(), 1)
    if shift + max(len(rows_a), 1).bit_length() > 62:
        raise ValueError("too many pairs or members for one block: verify fewer pairs at once")
    pairs = np.arange(len(rows_a), dtype=np.int64)

    def keyed(rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        owner = np.repeat(pairs, sizes)
        begin = np.repeat(offsets[rows] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        return (owner << np.int64(shift)) | members[begin + np.arange(len(owner))]

    keys = np.concatenate([keyed(rows_a, sizes_a), keyed(rows_b, sizes_b)])
    keys.sort()
    both = keys[1:][keys[1:] == keys[:-1]]
    inter = np.bincount(both >> np.int64(shift), minlength=len(rows_a))
    union = sizes_a + sizes_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def near_edges(
    spark: SparkSession,
    views: Mapping[str, TableView],
    settings: MinHashSettings,
    threshold: float,
    max_bucket: int,
    storage_options: Mapping[str, str] | None = None,
) -> list[tuple[str, str, float]]:
    """Verified ``(a, b, jaccard)`` pairs of rows of one table each, ``a < b``, Jaccard at or
    above ``threshold``. The tables (``{name: pinned view}``) go through one Spark plan
    together; the shuffle has ``spark.sql.shuffle.partitions`` partitions, or more so that
    one holds about ``BUCKET_ROWS_PER_PARTITION`` bucket rows. ``storage_options`` are the
    lake's (``lake.store.options()``)."""
    from functools import reduce

    from pyspark.sql import DataFrame

    from jobs.spark import map_table, spark_schema

    if not views:
        return []
    rows = sum(view.count_rows() for view in views.values())
    configured = int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    partitions = max(configured, -(-rows * settings.bands // BUCKET_ROWS_PER_PARTITION))
    labels = partition_labels(spark, partitions)
    # The signatures are the costly part: at least one read task per core.
    cores = spark.sparkContext.defaultParallelism

    number = {table: source for source, table in enumerate(views)}
    blocks = reduce(
        DataFrame.unionByName,
        [
            map_table(
                spark,
                view,
                partial(
                    _bucket_partition,
                    table=table,
                    source=number[table],
                    settings=settings,
                    labels=labels,
                ),
                BLOCK_SCHEMA,
                storage_options=storage_options,
                columns=KEY_COLUMNS[table],
                min_tasks=cores,
                positions=True,
                batch_rows=READ_ROWS,
            )
            for table, view in views.items()
        ],
    )
    candidates = (
        blocks.repartition(partitions, "part")
        .mapInArrow(partial(_pair_partition, max_bucket=max_bucket), spark_schema(PAIR_SCHEMA))
        .toArrow()
    )
    a, b = candidates["a"].to_numpy(), candidates["b"].to_numpy()
    # Buckets are salted per table; a pair across tables is a 64-bit collision, not a copy.
    same = (a >> np.int64(SOURCE_SHIFT)) == (b >> np.int64(SOURCE_SHIFT))
    if not same.any():
        return []
    # The rows in any pair, and each pair once (one may come from several partitions).
    wanted, left, right = distinct_pairs(a[same], b[same])
    # The candidates' rows only are read back, on the driver, which verifies their pairs.
    ids, offsets, values = shingle_sets(views, wanted, settings.ngram)
    members = np.unique(values, return_inverse=True)[1].astype(np.int64)
    names = np.asarray(ids, dtype=object)
    edges: list[tuple[str, str, float]] = []
    for start in range(0, len(left), PAIR_BLOCK):
        la, rb = left[start : start + PAIR_BLOCK], right[start : start + PAIR_BLOCK]
        similarity = jaccard_of_pairs(offsets, members, la, rb)
        keep = np.flatnonzero(similarity >= threshold)
        x, y = names[la[keep]], names[rb[keep]]
        first = x < y
        edges += zip(
            np.where(first, x, y).tolist(),
            np.where(first, y, x).tolist(),
            similarity[keep].tolist(),
            strict=True,
        )
    return sorted(edges)
