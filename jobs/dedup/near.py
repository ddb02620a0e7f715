"""Near-duplicates on Spark: MinHash signatures, LSH bands, verified pairs, components.

1. ``mapInArrow`` over the pinned table (one task per Lance fragment): each Arrow batch is
   normalised, shingled and signed with numpy (``jobs.dedup.minhash``), giving per row its
   shingle hashes and its ``bands`` band keys.
2. Band keys are exploded to ``(band, key, id)`` and grouped: rows that share a key in any band
   are candidates. Pairs are formed by a self-join within each bucket; a bucket larger than
   ``max_bucket`` links every member to its smallest id only (a star instead of all pairs,
   which bounds the quadratic blow-up of a very common band value; components still join).
3. Every candidate pair is verified on Spark by the exact Jaccard similarity of the two
   shingle sets (``array_intersect``/``array_union``); pairs at or above the threshold are
   edges.
4. Only the edges come to the driver, where union-find gives the connected components.

Several tables go through one plan (a ``source`` column keeps their buckets apart), so the
fixed cost of Spark's stages is paid once.
"""

from __future__ import annotations

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

SIGNED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("shingles", pa.list_(pa.int64()), nullable=False),
        pa.field("bands", pa.list_(pa.int64()), nullable=False),
    ]
)


@dataclass(frozen=True)
class MinHashSettings:
    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int


def sign_batch(table: str, batch: pa.RecordBatch | pa.Table, settings: MinHashSettings) -> pa.Table:
    """Shingles and band keys of every row of ``batch`` that has any text."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    keys = tokenizable(table, normalized_keys(table, rows))
    sets = shingles(keys, settings.ngram)
    sigs = signatures(sets, settings.num_perm, settings.seed)
    bands = band_keys(sigs, settings.bands, settings.rows)
    keep = np.flatnonzero(sets.sizes > 0)
    ids = rows["id"].combine_chunks().take(pa.array(keep))
    shingle_lists = pa.ListArray.from_arrays(
        pa.array(sets.offsets, pa.int32()), pa.array(sets.hashes.view(np.int64))
    ).take(pa.array(keep))
    band_lists = pa.ListArray.from_arrays(
        pa.array(np.arange(0, bands.size + 1, settings.bands, dtype=np.int32)),
        pa.array(bands.reshape(-1)),
    ).take(pa.array(keep))
    return pa.Table.from_arrays([ids, shingle_lists, band_lists], schema=SIGNED_SCHEMA)


def _sign_partition(
    batches: Iterator[pa.RecordBatch], *, table: str, settings: MinHashSettings
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        if batch.num_rows:
            yield from sign_batch(table, batch, settings).to_batches()


def near_edges(
    frames: dict[str, DataFrame], settings: MinHashSettings, threshold: float, max_bucket: int
) -> list[tuple[str, str, float]]:
    """Verified ``(a, b, jaccard)`` pairs of rows of one table each, ``a < b``, Jaccard at or
    above ``threshold``. The tables (``{name: frame}``) go through one Spark plan together."""
    from functools import reduce

    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F

    from jobs.spark import spark_schema

    if not frames:
        return []
    signed_parts = [
        frame.select(*KEY_COLUMNS[table])
        .mapInArrow(
            partial(_sign_partition, table=table, settings=settings), spark_schema(SIGNED_SCHEMA)
        )
        .withColumn("source", F.lit(table))
        for table, frame in frames.items()
    ]
    signed = reduce(SparkFrame.unionByName, signed_parts).persist()
    try:
        bands = signed.select("source", "id", F.posexplode("bands").alias("band", "key"))
        buckets = (
            bands.groupBy("source", "band", "key")
            .agg(F.array_sort(F.collect_list("id")).alias("ids"))
            .withColumn("n", F.size("ids"))
            .filter(F.col("n") > 1)
        )
        # All pairs of a bucket (ids sorted, so a < b), or a star on its first id when large.
        every_pair = F.flatten(
            F.transform(
                F.sequence(F.lit(0), F.col("n") - 2),
                lambda i: F.transform(
                    F.slice("ids", i + 2, F.col("n")),
                    lambda x: F.struct(F.element_at("ids", i + 1).alias("a"), x.alias("b")),
                ),
            )
        )
        star = F.transform(
            F.slice("ids", 2, F.col("n")),
            lambda x: F.struct(F.element_at("ids", 1).alias("a"), x.alias("b")),
        )
        candidates = (
            buckets.select(
                F.explode(F.when(F.col("n") <= max_bucket, every_pair).otherwise(star)).alias("p")
            )
            .select("p.a", "p.b")
            .distinct()
        )
        sets = signed.select("id", "shingles")
        joined = candidates.join(
            sets.select(F.col("id").alias("a"), F.col("shingles").alias("sa")), "a"
        ).join(sets.select(F.col("id").alias("b"), F.col("shingles").alias("sb")), "b")
        inter = F.size(F.array_intersect("sa", "sb"))
        union = F.size(F.array_union("sa", "sb"))
        verified = joined.select("a", "b", (inter / union).alias("jaccard")).filter(
            F.col("jaccard") >= threshold
        )
        return [(r["a"], r["b"], float(r["jaccard"])) for r in verified.collect()]
    finally:
        signed.unpersist()
