"""Near-duplicates on Spark: MinHash signatures, LSH buckets, verified pairs, components.

1. ``mapInArrow`` over the pinned table (one task per Lance fragment): each Arrow batch is
   normalised, shingled and signed with numpy (``jobs.dedup.minhash``), and every row becomes
   one ``(bucket, id, shingles)`` row per band, the bucket being the band's key (mixed with
   the band number and the source table).
2. One shuffle: the rows are hash-partitioned by bucket and sorted within each partition, so
   a bucket's rows are contiguous. A second ``mapInArrow`` finds the buckets with two or more
   rows, forms their pairs (every pair; a bucket larger than ``max_bucket`` links its members
   to its smallest id only, a star that bounds the quadratic blow-up of a very common band
   value while components still join), drops pairs already seen in the partition, and
   verifies every pair by the exact Jaccard similarity of the two shingle sets, vectorised
   (the sets of a block of pairs are concatenated, sorted and equal neighbours counted).
3. Only verified edges (Jaccard at or above the threshold) come to the driver, where
   union-find gives the connected components. A pair that shares several bands may be
   verified in several partitions; the driver keeps it once.

Several tables go through one plan (a ``source`` salt keeps their buckets apart), so the
fixed cost of Spark's stages is paid once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from jobs.dedup.minhash import band_keys, shingles, signatures
from jobs.dedup.normalize import KEY_COLUMNS, normalized_keys, tokenizable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BUCKET_SCHEMA = pa.schema(
    [
        pa.field("bucket", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        # The row's distinct shingle hashes as little-endian int64 bytes: Spark moves a binary
        # value far faster than an array of longs.
        pa.field("shingles", pa.binary(), nullable=False),
    ]
)
EDGE_SCHEMA = pa.schema(
    [
        pa.field("a", pa.string(), nullable=False),
        pa.field("b", pa.string(), nullable=False),
        pa.field("jaccard", pa.float64(), nullable=False),
    ]
)
PAIR_BLOCK = 100_000
BUCKET_ROWS_PER_PARTITION = 400_000


@dataclass(frozen=True)
class MinHashSettings:
    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int


def _salt(source: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(source.encode(), digest_size=8).digest()))


def bucket_rows(
    table: str, batch: pa.RecordBatch | pa.Table, settings: MinHashSettings
) -> pa.Table:
    """One ``(bucket, id, shingles)`` row per band of every row of ``batch`` with any text;
    the shingles are each row's distinct hashes, sorted."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    keys = tokenizable(table, normalized_keys(table, rows))
    sets = shingles(keys, settings.ngram)
    bands = band_keys(
        signatures(sets, settings.num_perm, settings.seed), settings.bands, settings.rows
    )
    distinct = sets.distinct()
    keep = np.flatnonzero(distinct.sizes > 0)
    owner = np.repeat(keep, settings.bands)
    buckets = (bands[keep].reshape(-1).view(np.uint64) ^ _salt(table)).view(np.int64)
    lists = pa.BinaryArray.from_buffers(
        pa.binary(),
        len(distinct.offsets) - 1,
        [
            None,
            pa.py_buffer((distinct.offsets * 8).astype(np.int32).tobytes()),
            pa.py_buffer(distinct.hashes.astype("<u8").tobytes()),
        ],
    )
    take = pa.array(owner)
    return pa.Table.from_arrays(
        [pa.array(buckets), rows["id"].combine_chunks().take(take), lists.take(take)],
        schema=BUCKET_SCHEMA,
    )


def _bucket_partition(
    batches: Iterator[pa.RecordBatch], *, table: str, settings: MinHashSettings
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.num_rows:
            yield from bucket_rows(table, batch, settings).to_batches()


def _bucket_pairs(
    buckets: np.ndarray, ids: np.ndarray, max_bucket: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs within runs of equal ``buckets`` (sorted), stars for large runs."""
    n = len(buckets)
    starts = np.flatnonzero(np.concatenate([[True], buckets[1:] != buckets[:-1]]))
    lengths = np.diff(np.concatenate([starts, [n]]))
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for start, length in zip(
        starts[lengths > 1].tolist(), lengths[lengths > 1].tolist(), strict=True
    ):
        if length <= max_bucket:
            i, j = np.triu_indices(length, 1)
            left.append(start + i)
            right.append(start + j)
        else:
            members = np.arange(start, start + length)
            first = start + int(np.argmin(ids[start : start + length]))
            others = members[members != first]
            left.append(np.full(len(others), first))
            right.append(others)
    if not left:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(left), np.concatenate(right)


def jaccard_of_pairs(
    offsets: np.ndarray, values: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray
) -> np.ndarray:
    """Exact Jaccard of the (distinct, per row) sets of every pair ``(rows_a[k], rows_b[k])``.

    >>> offsets, values = np.array([0, 3, 5, 6]), np.array([1, 2, 3, 2, 3, 9])
    >>> jaccard_of_pairs(offsets, values, np.array([0, 0]), np.array([1, 2])).tolist()
    [0.6666666666666666, 0.0]
    """
    sizes_a = offsets[rows_a + 1] - offsets[rows_a]
    sizes_b = offsets[rows_b + 1] - offsets[rows_b]
    pairs = np.arange(len(rows_a))

    def gather(rows: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owner = np.repeat(pairs, sizes)
        begin = np.repeat(offsets[rows] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        return owner, values[begin + np.arange(len(owner))]

    owner_a, values_a = gather(rows_a, sizes_a)
    owner_b, values_b = gather(rows_b, sizes_b)
    owner = np.concatenate([owner_a, owner_b])
    merged = np.concatenate([values_a, values_b])
    order = np.lexsort((merged, owner))
    owner, merged = owner[order], merged[order]
    same = (owner[1:] == owner[:-1]) & (merged[1:] == merged[:-1])
    inter = np.bincount(owner[1:][same], minlength=len(rows_a))
    union = sizes_a + sizes_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _verify_partition(
    batches: Iterator[pa.RecordBatch], *, threshold: float, max_bucket: int
) -> Iterator[pa.RecordBatch]:
    received = [b for b in batches if b.num_rows]
    if not received:
        return
    data = pa.Table.from_batches(received)
    buckets = data["bucket"].to_numpy()
    ids = np.asarray(data["id"].to_numpy(zero_copy_only=False), dtype=object)
    left, right = _bucket_pairs(buckets, ids, max_bucket)
    if not len(left):
        return
    names, doc = np.unique(ids, return_inverse=True)
    da, db = doc[left], doc[right]
    low = np.where(da < db, left, right)
    high = np.where(da < db, right, left)
    _, first = np.unique(np.minimum(da, db) * len(names) + np.maximum(da, db), return_index=True)
    low, high = low[first], high[first]
    blobs = data["shingles"].combine_chunks()
    if blobs.offset:
        blobs = pa.concat_arrays([blobs])
    byte_offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[: len(blobs) + 1]
    offsets = (byte_offsets.astype(np.int64) - byte_offsets[0]) // 8
    start_byte = int(byte_offsets[0])
    values = np.frombuffer(
        blobs.buffers()[2], dtype="<i8", count=int(offsets[-1]), offset=start_byte
    )
    for start in range(0, len(low), PAIR_BLOCK):
        a, b = low[start : start + PAIR_BLOCK], high[start : start + PAIR_BLOCK]
        similarity = jaccard_of_pairs(offsets, values, a, b)
        keep = similarity >= threshold
        if keep.any():
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(ids[a[keep]].astype(str), pa.string()),
                    pa.array(ids[b[keep]].astype(str), pa.string()),
                    pa.array(similarity[keep], pa.float64()),
                ],
                schema=EDGE_SCHEMA,
            )


def near_edges(
    frames: dict[str, DataFrame],
    settings: MinHashSettings,
    threshold: float,
    max_bucket: int,
    rows: int | None = None,
) -> list[tuple[str, str, float]]:
    """Verified ``(a, b, jaccard)`` pairs of rows of one table each, ``a < b``, Jaccard at or
    above ``threshold``. The tables (``{name: frame}``) go through one Spark plan together;
    ``rows`` (their total, when known) sizes the shuffle so a partition holds about
    ``BUCKET_ROWS_PER_PARTITION`` bucket rows."""
    from functools import reduce

    from pyspark.sql import DataFrame as SparkFrame

    from jobs.spark import spark_schema

    if not frames:
        return []
    spark = next(iter(frames.values())).sparkSession
    configured = int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    wanted = -(-(rows or 0) * settings.bands // BUCKET_ROWS_PER_PARTITION)
    partitions = max(configured, wanted)
    cores = spark.sparkContext.defaultParallelism

    def spread(frame: DataFrame) -> DataFrame:
        # A table of one Lance fragment is one read task: spread its rows over the cores
        # before the signatures, the costly part.
        if frame.rdd.getNumPartitions() < cores:
            return frame.repartition(cores)
        return frame

    exploded = reduce(
        SparkFrame.unionByName,
        [
            spread(frame.select(*KEY_COLUMNS[table])).mapInArrow(
                partial(_bucket_partition, table=table, settings=settings),
                spark_schema(BUCKET_SCHEMA),
            )
            for table, frame in frames.items()
        ],
    )
    verified = (
        exploded.repartition(partitions, "bucket")
        .sortWithinPartitions("bucket")
        .mapInArrow(
            partial(_verify_partition, threshold=threshold, max_bucket=max_bucket),
            spark_schema(EDGE_SCHEMA),
        )
    )
    edges: dict[tuple[str, str], float] = {}
    for row in verified.collect():
        edges[(row["a"], row["b"])] = float(row["jaccard"])
    return [(a, b, j) for (a, b), j in sorted(edges.items())]
