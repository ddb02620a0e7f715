"""Near-duplicates on Spark: MinHash signatures, LSH buckets, verified pairs, components.

1. ``mapInArrow`` over the pinned table (rows spread over the cores): each Arrow batch is
   normalised, shingled and signed with numpy (``jobs.dedup.minhash``), and every row becomes
   one ``(bucket, row)`` pair of int64s per band, the bucket being the band's key (mixed with
   the band number and the source table) and ``row`` a 64-bit hash of the table and the id.
   Only these 16-byte rows go through the shuffle (the shingle sets stay out of it).
2. One shuffle: the pairs are hash-partitioned by bucket and sorted within each partition, so
   a bucket's rows are contiguous. A second ``mapInArrow`` forms the candidate pairs of the
   buckets with two or more rows (every pair; a bucket larger than ``max_bucket`` links its
   members to its smallest row key only, a star that bounds the quadratic blow-up of a very
   common band value while components still join) and drops pairs already seen there.
3. The candidate pairs come to the driver; a second pass over the tables returns the shingle
   sets of the rows in a candidate pair only, and the driver verifies every pair by the exact
   Jaccard similarity of the two sets, vectorised (the sets of a block of pairs are
   concatenated, sorted and equal neighbours counted). Verified edges (Jaccard at or above
   the threshold) go to union-find for the connected components.

Several tables go through one plan (a ``source`` salt keeps their buckets apart), so the
fixed cost of Spark's stages is paid once per pass.
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
        # The row's key: 64-bit BLAKE2b of its table and id (the sets stay out of the shuffle).
        pa.field("row", pa.int64(), nullable=False),
    ]
)
PAIR_SCHEMA = pa.schema(
    [pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.int64(), nullable=False)]
)
SET_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        # The row's distinct shingle hashes as little-endian int64 bytes.
        pa.field("shingles", pa.binary(), nullable=False),
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


def row_keys(table: str, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One int64 per id: 64-bit BLAKE2b of ``table`` and the id."""
    prefix = f"{table}\0".encode()
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(prefix + i.encode(), digest_size=8).digest())
            for i in ids.to_pylist()
        ],
        dtype=np.uint64,
    ).view(np.int64)


def bucket_rows(
    table: str, batch: pa.RecordBatch | pa.Table, settings: MinHashSettings
) -> pa.Table:
    """One ``(bucket, row)`` pair per band of every row of ``batch`` with any text."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    keys = tokenizable(table, normalized_keys(table, rows))
    sets = shingles(keys, settings.ngram)
    bands = band_keys(
        signatures(sets, settings.num_perm, settings.seed), settings.bands, settings.rows
    )
    keep = np.flatnonzero(sets.sizes > 0)
    owner = np.repeat(keep, settings.bands)
    buckets = (bands[keep].reshape(-1).view(np.uint64) ^ _salt(table)).view(np.int64)
    return pa.Table.from_arrays(
        [pa.array(buckets), pa.array(row_keys(table, rows["id"])[owner])], schema=BUCKET_SCHEMA
    )


def _bucket_partition(
    batches: Iterator[pa.RecordBatch], *, table: str, settings: MinHashSettings
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.num_rows:
            yield from bucket_rows(table, batch, settings).to_batches()


def _bucket_pairs(
    buckets: np.ndarray, rows: np.ndarray, max_bucket: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs within runs of equal ``buckets`` (sorted), stars for large runs (every
    member linked to the one of smallest ``rows`` key)."""
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
            first = start + int(np.argmin(rows[start : start + length]))
            others = members[members != first]
            left.append(np.full(len(others), first))
            right.append(others)
    if not left:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(left), np.concatenate(right)


def _pair_partition(
    batches: Iterator[pa.RecordBatch], *, max_bucket: int
) -> Iterator[pa.RecordBatch]:
    received = [b for b in batches if b.num_rows]
    if not received:
        return
    data = pa.Table.from_batches(received)
    buckets = data["bucket"].to_numpy()
    rows = data["row"].to_numpy()
    left, right = _bucket_pairs(buckets, rows, max_bucket)
    a, b = rows[left], rows[right]
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs):
        yield pa.RecordBatch.from_arrays(
            [pa.array(pairs[:, 0]), pa.array(pairs[:, 1])], schema=PAIR_SCHEMA
        )


def set_rows(
    table: str, batch: pa.RecordBatch | pa.Table, settings: MinHashSettings, wanted: np.ndarray
) -> pa.Table:
    """``(row, id, shingles)`` of the rows of ``batch`` whose key is in ``wanted`` (sorted)."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    keys = row_keys(table, rows["id"])
    pick = np.flatnonzero(np.isin(keys, wanted, assume_unique=False))
    rows = rows.take(pa.array(pick))
    distinct = shingles(tokenizable(table, normalized_keys(table, rows)), settings.ngram).distinct()
    blobs = pa.BinaryArray.from_buffers(
        pa.binary(),
        len(pick),
        [
            None,
            pa.py_buffer((distinct.offsets * 8).astype(np.int32).tobytes()),
            pa.py_buffer(distinct.hashes.astype("<u8").tobytes()),
        ],
    )
    return pa.Table.from_arrays(
        [pa.array(keys[pick]), rows["id"].combine_chunks(), blobs], schema=SET_SCHEMA
    )


def _set_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    table: str,
    settings: MinHashSettings,
    wanted: np.ndarray,
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.num_rows:
            yield from set_rows(table, batch, settings, wanted).to_batches()


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
    candidates = (
        exploded.repartition(partitions, "bucket")
        .sortWithinPartitions("bucket")
        .mapInArrow(partial(_pair_partition, max_bucket=max_bucket), spark_schema(PAIR_SCHEMA))
        .toArrow()
    )
    a, b = candidates["a"].to_numpy(), candidates["b"].to_numpy()
    if not len(a):
        return []
    # A pair that shares several bands may come from several partitions.
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    wanted = np.unique(pairs)
    # Second pass: the shingle sets of the candidates' rows only, to the driver.
    sets = reduce(
        SparkFrame.unionByName,
        [
            frame.select(*KEY_COLUMNS[table]).mapInArrow(
                partial(_set_partition, table=table, settings=settings, wanted=wanted),
                spark_schema(SET_SCHEMA),
            )
            for table, frame in frames.items()
        ],
    ).toArrow()
    keys = sets["row"].to_numpy()
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        raise RuntimeError("two rows share a 64-bit row key; near dedup cannot tell them apart")
    ids = np.asarray(sets["id"].to_numpy(zero_copy_only=False), dtype=object)[order]
    blobs = sets["shingles"].combine_chunks().take(pa.array(order))
    if blobs.offset:
        blobs = pa.concat_arrays([blobs])
    byte_offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int32)[: len(blobs) + 1]
    offsets = (byte_offsets.astype(np.int64) - byte_offsets[0]) // 8
    values = np.frombuffer(
        blobs.buffers()[2], dtype="<i8", count=int(offsets[-1]), offset=int(byte_offsets[0])
    )
    left = np.searchsorted(keys, pairs[:, 0])
    right = np.searchsorted(keys, pairs[:, 1])
    edges: list[tuple[str, str, float]] = []
    for start in range(0, len(pairs), PAIR_BLOCK):
        la, rb = left[start : start + PAIR_BLOCK], right[start : start + PAIR_BLOCK]
        similarity = jaccard_of_pairs(offsets, values, la, rb)
        for k in np.flatnonzero(similarity >= threshold).tolist():
            x, y = str(ids[la[k]]), str(ids[rb[k]])
            edges.append((min(x, y), max(x, y), float(similarity[k])))
    return sorted(edges)
