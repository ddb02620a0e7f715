"""Semantic duplicates: sentence embeddings and a LanceDB vector search for close neighbours.

Texts are embedded with all-MiniLM-L6-v2 (``jobs.envs.embed``: offline, L2-normalised) and
written to a scratch LanceDB table; every row's ``neighbours`` nearest rows by cosine distance
are found in batched multi-vector searches, and pairs whose cosine similarity reaches the
threshold are edges, grouped into connected components. Below ``index_min_rows`` rows the search
is exact (a flat scan); from there an IVF_HNSW_SQ index is built first, which is approximate: a
pair the index misses is not linked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from jobs.dedup.clusters import connected_components

QUERY_BATCH = 512


def semantic_edges(
    ids: Sequence[str],
    vectors: np.ndarray,
    threshold: float,
    neighbours: int,
    index_min_rows: int = 20_000,
) -> list[tuple[str, str, float]]:
    """``(a, b, cosine)`` for pairs among each row's nearest ``neighbours`` at ``threshold`` or
    above, ``a < b``, each pair once."""
    import lancedb

    if len(ids) < 2:
        return []
    dims = vectors.shape[1]
    data = pa.table(
        {
            "id": pa.array(list(ids), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.astype(np.float32).reshape(-1)), dims
            ),
        }
    )
    edges: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="astra-semantic-") as scratch:
        table = lancedb.connect(scratch).create_table("vectors", data=data)
        if len(ids) >= index_min_rows:
            table.create_index(
                metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ"
            )
        for start in range(0, len(ids), QUERY_BATCH):
            queries = vectors[start : start + QUERY_BATCH]
            found = (
                table.search(list(queries))
                .distance_type("cosine")
                .limit(neighbours + 1)
                .select(["id", "_distance"])
                .to_arrow()
            )
            for q, other, distance in zip(
                found["query_index"].to_pylist(),
                found["id"].to_pylist(),
                found["_distance"].to_pylist(),
                strict=True,
            ):
                me = ids[start + q]
                similarity = 1.0 - float(distance)
                if other == me or similarity < threshold:
                    continue
                pair = (min(me, other), max(me, other))
                edges[pair] = max(edges.get(pair, similarity), similarity)
    return [(a, b, min(s, 1.0)) for (a, b), s in sorted(edges.items())]


def semantic_groups(
    ids: Sequence[str], texts: Sequence[str], threshold: float, neighbours: int
) -> list[tuple[list[str], float]]:
    """Connected components of rows whose texts embed within ``threshold`` cosine."""
    from jobs.envs.embed import embed

    return connected_components(semantic_edges(ids, embed(texts), threshold, neighbours))
