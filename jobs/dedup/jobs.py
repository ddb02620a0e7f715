"""The dedup jobs: three levels and decontamination find clusters; ``curate`` applies them.

Each level reads pinned versions of ``tasks``, ``trajectories`` and ``env_tools`` and upserts
its clusters into ``dedup_clusters`` (ids are content hashes of level, table and members, so
the same finding is the same row). ``curate`` then writes a new version of every curated table
without the dropped rows and records one ``RowsDeduplicated`` event per table it changed, in
the same log commit; the rows stay in the tables' history and in earlier snapshots. What is
dropped:

- every member of an exact, near or semantic cluster except its representative (the smallest
  id among members whose parents the same level keeps, so a kept trajectory belongs to a kept
  task; else the smallest id);
- every row matched to a benchmark item (contamination);
- rows derived from a dropped row (``parent_dropped``): a trajectory of a dropped task; the
  rewards, SFT examples and QA traces of a dropped trajectory; an environment whose QA trace or
  any of whose tools was dropped; a tool all of whose QA traces were dropped.

``astra pipeline dedup`` runs exact, curate, near, curate, semantic, curate, decontaminate,
curate, so each level sees only what the previous one kept, and a group of copies always keeps
one row. Run again, the levels find nothing in the curated tables and curate writes nothing.
Neither is an empty output in the runner's sense (``may_be_empty``): a level that finds no
copies and a curate with nothing to drop are correct answers, so the dedup pipeline is never
stopped for writing no rows.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from jobs.base import Job, JobContext
from jobs.dedup.benchmarks import BENCHMARKS, Benchmark, fingerprint, load_items
from jobs.dedup.clusters import cluster_rows
from jobs.dedup.minhash import optimal_bands
from jobs.dedup.normalize import DEDUP_TABLES, KEY_COLUMNS, key_texts, normalized_keys, text_key
from schemas import DATA_TABLES
from schemas.dedup import DedupCluster, DedupLevel
from schemas.events import RowsDeduplicated

CLUSTERS = DedupCluster.TABLE


def _check_tables(tables: tuple[str, ...], allowed: tuple[str, ...] = DEDUP_TABLES) -> None:
    unknown = [t for t in tables if t not in allowed]
    if unknown or not tables:
        raise ValueError(f"tables={list(tables)}: choose one or more of {list(allowed)}")


def _write_clusters(ctx: JobContext, rows: list[DedupCluster]) -> None:
    found = Counter[str]()
    for row in rows:
        found[f"{row.level} {row.source_table}"] += 1
        dropped = row.size if row.level == "contamination" else row.size - 1
        ctx.dropped[f"{row.level} duplicate in {row.source_table}"] += dropped
    ctx.run.metrics["clusters"] = dict(found)
    ctx.upsert(CLUSTERS, DedupCluster.to_arrow(rows))


def _cluster_each_table(
    ctx: JobContext,
    level: DedupLevel,
    tables: tuple[str, ...],
    groups_of: Callable[[str, pa.Table], tuple[list[tuple[list[str], float]], dict | None]],
) -> None:
    """One level's clusters, table by table: ``groups_of(table, rows)`` groups the rows (their
    key columns, ids and parents) and may give each group's text hash; one write at the end."""
    rows: list[DedupCluster] = []
    dropping: set[str] = set()
    for table in tables:
        view = ctx.read(table)
        data = view.to_arrow(columns=[*KEY_COLUMNS[table], "parent_ids"])
        groups, hashes = groups_of(table, data)
        rows += cluster_rows(
            level, table, view.version, groups, hashes, ctx.run.run_id, _parents(data), dropping
        )
    _write_clusters(ctx, rows)


def _parents(rows: pa.Table) -> dict[str, list[str]]:
    return dict(zip(rows["id"].to_pylist(), rows["parent_ids"].to_pylist(), strict=True))


# -- exact ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactParams:
    tables: tuple[str, ...] = field(
        default=DEDUP_TABLES, metadata={"help": "tables to dedup: tasks, trajectories, env_tools"}
    )

    def __post_init__(self) -> None:
        _check_tables(self.tables)


def exact_groups(table: str, rows: pa.Table) -> tuple[list[tuple[list[str], float]], dict]:
    """Groups of ``rows`` with equal normalised keys, and each group's key hash by first id."""
    keys = normalized_keys(table, rows)
    frame = pl.DataFrame({"id": rows["id"].combine_chunks(), "key": keys})
    grouped = (
        # Keys whose 64-bit hash repeats (five times cheaper to find than repeated strings;
        # a collision only lets a row through to the exact grouping on the string below).
        frame.filter((pl.col("key") != "") & pl.col("key").hash().is_duplicated())
        .group_by("key")
        .agg(pl.col("id").sort(), pl.len().alias("n"))
        .filter(pl.col("n") > 1)
    )
    groups, hashes = [], {}
    for key, ids in zip(grouped["key"].to_list(), grouped["id"].to_list(), strict=True):
        groups.append((ids, 1.0))
        hashes[ids[0]] = text_key(key)
    return groups, hashes


class DedupExact(Job):
    name: ClassVar[str] = "dedup-exact"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "exact copies: equal normalised query, call sequence plus text, or canonical code"
    )
    inputs: ClassVar[tuple[str, ...]] = DEDUP_TABLES
    outputs: ClassVar[tuple[str, ...]] = (CLUSTERS,)
    may_be_empty: ClassVar[tuple[str, ...]] = (CLUSTERS,)  # no copies found is an answer
    Params: ClassVar[type] = ExactParams

    def run(self, ctx: JobContext) -> None:
        _cluster_each_table(ctx, "exact", self.params.tables, exact_groups)


# -- near -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NearParams:
    tables: tuple[str, ...] = field(
        default=("tasks", "trajectories"),
        metadata={"help": "tables to dedup (env_tools too, if tools differ only slightly)"},
    )
    threshold: float = field(
        default=0.8, metadata={"help": "Jaccard similarity of shingle sets that makes a copy"}
    )
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations"})
    ngram: int = field(default=2, metadata={"help": "words per shingle"})
    bands: int | None = field(
        default=None,
        metadata={"help": "LSH bands (default: chosen from threshold and num_perm)"},
    )
    false_positive_weight: float = field(
        default=0.1,
        metadata={
            "help": "weight of false positives vs false negatives when choosing bands; "
            "candidates are verified, so misses cost more"
        },
    )
    max_bucket: int = field(
        default=200, metadata={"help": "a larger LSH bucket links its members to one of them only"}
    )

    def __post_init__(self) -> None:
        _check_tables(self.tables)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: use a Jaccard between 0 and 1")
        if self.num_perm < 2 or self.ngram < 1 or self.max_bucket < 2:
            raise ValueError("num_perm must be >= 2, ngram >= 1 and max_bucket >= 2")
        if self.bands is not None and not 1 <= self.bands <= self.num_perm:
            raise ValueError(f"bands={self.bands}: use 1..num_perm ({self.num_perm})")
        if not 0.0 < self.false_positive_weight < 1.0:
            raise ValueError("false_positive_weight must be between 0 and 1")

    def banding(self) -> tuple[int, int]:
        """``(bands, rows per band)``."""
        if self.bands is not None:
            return self.bands, self.num_perm // self.bands
        return optimal_bands(self.threshold, self.num_perm, self.false_positive_weight)


class DedupNear(Job):
    name: ClassVar[str] = "dedup-near"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "near copies on Spark: MinHash LSH candidates verified by Jaccard, connected components"
    )
    inputs: ClassVar[tuple[str, ...]] = DEDUP_TABLES
    outputs: ClassVar[tuple[str, ...]] = (CLUSTERS,)
    may_be_empty: ClassVar[tuple[str, ...]] = (CLUSTERS,)  # no copies found is an answer
    Params: ClassVar[type] = NearParams

    def run(self, ctx: JobContext) -> None:
        from jobs.dedup.clusters import connected_components
        from jobs.dedup.near import MinHashSettings, near_edges

        bands, per_band = self.params.banding()
        settings = MinHashSettings(
            self.params.ngram, self.params.num_perm, bands, per_band, seed=ctx.seed
        )
        ctx.run.metrics["banding"] = {"bands": bands, "rows": per_band}
        views = {table: ctx.read(table) for table in self.params.tables}
        edges = near_edges(
            ctx.spark,
            views,
            settings,
            self.params.threshold,
            self.params.max_bucket,
            ctx.run.lake.store.options(),
        )
        ctx.run.metrics["verified_pairs"] = len(edges)
        rows: list[DedupCluster] = []
        dropping: set[str] = set()
        for table, view in views.items():
            prefix = DATA_TABLES[table].ID_PREFIX + "-"
            mine = [e for e in edges if e[0].startswith(prefix)]
            groups = connected_components(mine)
            parents = _parents(view.to_arrow(columns=["id", "parent_ids"]))
            rows += cluster_rows(
                "near", table, view.version, groups, None, ctx.run.run_id, parents, dropping
            )
        _write_clusters(ctx, rows)


# -- semantic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticParams:
    tables: tuple[str, ...] = field(
        default=("tasks",), metadata={"help": "tables to dedup by meaning"}
    )
    threshold: float = field(
        default=0.97, metadata={"help": "cosine similarity of embeddings that makes a copy"}
    )
    neighbours: int = field(default=10, metadata={"help": "nearest rows examined per row"})

    def __post_init__(self) -> None:
        _check_tables(self.tables)
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold}: use a cosine in (0, 1]")
        if self.neighbours < 1:
            raise ValueError("neighbours must be at least 1")


class DedupSemantic(Job):
    name: ClassVar[str] = "dedup-semantic"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "paraphrases: all-MiniLM-L6-v2 embeddings, LanceDB neighbours above a cosine threshold"
    )
    inputs: ClassVar[tuple[str, ...]] = DEDUP_TABLES
    outputs: ClassVar[tuple[str, ...]] = (CLUSTERS,)
    may_be_empty: ClassVar[tuple[str, ...]] = (CLUSTERS,)  # no copies found is an answer
    Params: ClassVar[type] = SemanticParams

    def run(self, ctx: JobContext) -> None:
        from jobs.dedup.semantic import semantic_groups

        def groups_of(table: str, data: pa.Table) -> tuple[list[tuple[list[str], float]], None]:
            texts = pc.fill_null(key_texts(table, data), "").to_pylist()
            ids = data["id"].to_pylist()
            return semantic_groups(ids, texts, self.params.threshold, self.params.neighbours), None

        _cluster_each_table(ctx, "semantic", self.params.tables, groups_of)


# -- decontamination --------------------------------------------------------------------------


@dataclass(frozen=True)
class DecontamParams:
    tables: tuple[str, ...] = field(
        default=("tasks", "trajectories"), metadata={"help": "tables to check"}
    )
    benchmarks: tuple[Benchmark, ...] = field(
        default=BENCHMARKS, metadata={"help": "benchmarks to check against: bfcl, tau2"}
    )
    ngram: int = field(default=8, metadata={"help": "words per n-gram"})
    min_overlap: float = field(
        default=0.5,
        metadata={"help": "share of a benchmark item's n-grams a row must contain to be dropped"},
    )

    def __post_init__(self) -> None:
        _check_tables(self.tables, ("tasks", "trajectories"))
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown or not self.benchmarks:
            raise ValueError(f"benchmarks={list(self.benchmarks)}: use {list(BENCHMARKS)}")
        if self.ngram < 3:
            raise ValueError(f"ngram={self.ngram}: use at least 3 words")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"min_overlap={self.min_overlap}: use a share in (0, 1]")


class Decontaminate(Job):
    name: ClassVar[str] = "decontaminate"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "rows overlapping BFCL or tau2-bench prompts (word n-grams on Spark), with the item"
    )
    inputs: ClassVar[tuple[str, ...]] = DEDUP_TABLES
    outputs: ClassVar[tuple[str, ...]] = (CLUSTERS,)
    may_be_empty: ClassVar[tuple[str, ...]] = (CLUSTERS,)  # no match found is an answer
    Params: ClassVar[type] = DecontamParams

    def fingerprint(self) -> str:
        return fingerprint(self.params.benchmarks)

    def run(self, ctx: JobContext) -> None:
        from jobs.dedup.decontam import contaminated
        from jobs.spark import read_table

        items = load_items(self.params.benchmarks)
        ctx.run.metrics["benchmark_items"] = len(items)
        views = {table: ctx.read(table) for table in self.params.tables}
        frames = {
            table: read_table(ctx.spark, view, ctx.run.lake.store.options())
            for table, view in views.items()
        }
        matches = contaminated(ctx.spark, frames, items, self.params.ngram, self.params.min_overlap)
        table_of = {DATA_TABLES[t].ID_PREFIX + "-": t for t in views}
        rows: list[DedupCluster] = []
        for m in matches:
            table = next(t for prefix, t in table_of.items() if m.row_id.startswith(prefix))
            rows.append(
                DedupCluster(
                    level="contamination",
                    source_table=table,
                    source_version=views[table].version,
                    members=[m.row_id],
                    size=1,
                    representative=None,
                    similarity=round(m.overlap, 6),
                    benchmark=m.benchmark,
                    benchmark_item=m.item_id,
                    benchmark_text=m.text[:500],
                    parent_ids=[m.row_id],
                    run_id=ctx.run.run_id,
                )
            )
        _write_clusters(ctx, rows)


# -- curate -----------------------------------------------------------------------------------

CURATED_TABLES: tuple[str, ...] = (
    "tasks",
    "trajectories",
    "rewards",
    "sft_examples",
    "qa_traces",
    "env_tools",
    "environments",
)
"""In dependency order: a table's rows derive only from tables before it."""

ALL_PARENTS_TABLES = frozenset({"env_tools"})
"""Tables whose row goes only when every parent went (a tool serves many QA traces)."""


def drop_decisions(clusters: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{table: {row_id: level}}`` of the rows the clusters drop (the first level wins).

    >>> drop_decisions([
    ...     {"level": "exact", "source_table": "tasks", "members": ["a", "b"],
    ...      "representative": "a"},
    ...     {"level": "contamination", "source_table": "tasks", "members": ["c"],
    ...      "representative": None}])
    {'tasks': {'b': 'exact', 'c': 'contamination'}}
    """
    decisions: dict[str, dict[str, str]] = {}
    for cluster in clusters:
        table = decisions.setdefault(cluster["source_table"], {})
        for member in cluster["members"]:
            if member != cluster["representative"]:
                table.setdefault(member, cluster["level"])
    return decisions


class Curate(Job):
    name: ClassVar[str] = "curate"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "new versions of the curated tables without dropped rows and rows derived from them"
    )
    inputs: ClassVar[tuple[str, ...]] = (CLUSTERS, *CURATED_TABLES)
    outputs: ClassVar[tuple[str, ...]] = CURATED_TABLES
    # It writes only the tables it drops rows from; the others keep their version.
    may_be_empty: ClassVar[tuple[str, ...]] = CURATED_TABLES

    def run(self, ctx: JobContext) -> None:
        clusters = (
            ctx.read(CLUSTERS)
            .to_arrow(columns=["level", "source_table", "members", "representative"])
            .to_pylist()
        )
        decisions = drop_decisions(clusters)
        gone: set[str] = set()
        for table in CURATED_TABLES:
            view = ctx.read(table)
            heads = view.to_arrow(columns=["id", "parent_ids"])
            direct = decisions.get(table, {})
            reasons: dict[str, str] = {}
            for row_id, parents in zip(
                heads["id"].to_pylist(), heads["parent_ids"].to_pylist(), strict=True
            ):
                if row_id in direct:
                    reasons[row_id] = direct[row_id]
                    continue
                known = [p for p in parents or [] if p in gone or _is_curated(p)]
                dropped_parents = [p for p in known if p in gone]
                if table in ALL_PARENTS_TABLES:
                    if known and len(dropped_parents) == len(known):
                        reasons[row_id] = "parent_dropped"
                elif dropped_parents:
                    reasons[row_id] = "parent_dropped"
            gone.update(reasons)
            if not reasons:
                continue
            rows = view.to_arrow()
            keep = pc.invert(pc.is_in(rows["id"], value_set=pa.array(sorted(reasons))))
            kept = rows.filter(keep)
            ctx.replace(table, kept)
            counts = Counter(reasons.values())
            for reason, n in counts.items():
                ctx.dropped[f"{table}: {reason}"] += n
            ctx.run.record(
                RowsDeduplicated(
                    table=table,
                    kept=kept.num_rows,
                    dropped=tuple(sorted(reasons)),
                    reasons=dict(sorted(counts.items())),
                )
            )


def _is_curated(row_id: str) -> bool:
    from schemas import table_of_row_id

    return table_of_row_id(row_id) in CURATED_TABLES


DEDUP_JOBS: tuple[type[Job], ...] = (DedupExact, DedupNear, DedupSemantic, Decontaminate, Curate)


def params_with(job: type[Job], **values: Any) -> Any:
    """``job.Params`` with ``values`` set where the field exists (others keep defaults)."""
    names = {f.name for f in dataclasses.fields(job.Params)}
    return job.Params(**{k: v for k, v in values.items() if k in names and v is not None})
