"""``astra dedup report`` and ``astra pipeline dedup``: run the levels, see what they found."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer

from astra.options import (
    DEFAULT_LAKE,
    AllowEmptyOption,
    ConfigOption,
    FormatOption,
    LakeOption,
    MasterOption,
)
from astra.output import CountProgress, OutputFormat, console, print_json, print_rows
from lake import Lake, TableNotFoundError
from schemas.events import RowsDeduplicated

app = typer.Typer(
    help="What dedup and decontamination found: clusters, examples, benchmark matches.",
    no_args_is_help=True,
)

SIZE_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4-5", 4, 5),
    ("6-10", 6, 10),
    ("11+", 11, 1 << 62),
)


def _bucket(size: int) -> str:
    return next(name for name, low, high in SIZE_BUCKETS if low <= size <= high)


def _clip(text: str | None, width: int = 160) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _texts(lake: Lake, table: str, version: int, ids: set[str]) -> dict[str, str]:
    """What each row says (its query, its first user message, its code's first lines),
    read at the version the level saw: dropped rows stay readable there."""
    from jobs.dedup.normalize import KEY_COLUMNS

    if not ids:
        return {}
    rows = lake.read(table, version=version).to_arrow(columns=KEY_COLUMNS[table])
    out: dict[str, str] = {}
    for record in rows.to_pylist():
        if record["id"] not in ids:
            continue
        if table == "tasks":
            out[record["id"]] = record["query"]
        elif table == "trajectories":
            user = next((m for m in record["messages"] if m["role"] == "user"), None)
            calls = [c["name"] for m in record["messages"] for c in m.get("tool_calls") or []]
            out[record["id"]] = f"{(user or {}).get('content') or ''} -> {' | '.join(calls)}"
        else:
            out[record["id"]] = " ".join(
                line.strip() for line in (record["code"] or "").splitlines() if line.strip()
            )
    return out


def build_report(
    lake: Lake, level: str | None, table: str | None, top: int, examples: int
) -> dict[str, Any]:
    """The report as plain data: summary per level and table, size histogram, top clusters
    with example members (``kept``: still in the table's current version), contamination
    matches and curation decisions."""
    try:
        view = lake.read("dedup_clusters")
    except TableNotFoundError:
        raise TableNotFoundError(
            "this lake has no dedup_clusters yet; run `astra pipeline dedup` first"
        ) from None
    rows = view.to_arrow().to_pylist()
    rows = [
        r
        for r in rows
        if (level is None or r["level"] == level) and (table is None or r["source_table"] == table)
    ]
    summary: dict[tuple[str, str], dict[str, Any]] = {}
    histogram: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        key = (r["level"], r["source_table"])
        entry = summary.setdefault(
            key,
            {"level": key[0], "table": key[1], "clusters": 0, "rows": 0, "dropped": 0},
        )
        entry["clusters"] += 1
        entry["rows"] += r["size"]
        entry["dropped"] += r["size"] if r["level"] == "contamination" else r["size"] - 1
        histogram[(key[0], key[1], _bucket(r["size"]))] += 1
    clusters = sorted(
        (r for r in rows if r["level"] != "contamination"),
        key=lambda r: (-r["size"], r["similarity"], r["id"]),
    )[:top]
    matches = sorted(
        (r for r in rows if r["level"] == "contamination"),
        key=lambda r: (-r["similarity"], r["id"]),
    )[:top]
    wanted: dict[tuple[str, int], set[str]] = {}
    for r in clusters:
        wanted.setdefault((r["source_table"], r["source_version"]), set()).update(
            r["members"][:examples]
        )
    for r in matches:
        wanted.setdefault((r["source_table"], r["source_version"]), set()).update(r["members"])
    texts: dict[str, str] = {}
    for (source, version), ids in wanted.items():
        texts.update(_texts(lake, source, version, ids))
    current: set[str] = set()
    for source in {r["source_table"] for r in clusters}:
        current.update(lake.read(source).to_arrow(columns=["id"])["id"].to_pylist())
    decisions = [
        {
            "run_id": e.run_id,
            "table": e.table,
            "kept": e.kept,
            "dropped": len(e.dropped),
            "reasons": dict(e.reasons),
        }
        for _, e in lake.events()
        if isinstance(e, RowsDeduplicated) and (table is None or e.table == table)
    ]
    return {
        "summary": [summary[k] for k in sorted(summary)],
        "histogram": [
            {"level": lv, "table": tb, "size": size, "clusters": n}
            for (lv, tb, size), n in sorted(
                histogram.items(),
                key=lambda kv: (kv[0][0], kv[0][1], [b[0] for b in SIZE_BUCKETS].index(kv[0][2])),
            )
        ],
        "top_clusters": [
            {
                "id": r["id"],
                "level": r["level"],
                "table": r["source_table"],
                "size": r["size"],
                "similarity": r["similarity"],
                "representative": r["representative"],
                "examples": [
                    {
                        "id": m,
                        "text": _clip(texts.get(m)),
                        "representative": m == r["representative"],
                        "kept": m in current,
                    }
                    for m in r["members"][:examples]
                ],
            }
            for r in clusters
        ],
        "contamination": [
            {
                "row": r["members"][0],
                "table": r["source_table"],
                "benchmark": r["benchmark"],
                "item": r["benchmark_item"],
                "overlap": r["similarity"],
                "text": _clip(texts.get(r["members"][0])),
                "benchmark_text": _clip(r["benchmark_text"]),
            }
            for r in matches
        ],
        "decisions": decisions,
    }


@app.command("report")
def report(
    level: Annotated[
        str | None,
        typer.Option(help="Only this level: exact, near, semantic or contamination."),
    ] = None,
    table: Annotated[
        str | None, typer.Option(help="Only clusters of this table: tasks, trajectories, ...")
    ] = None,
    top: Annotated[int, typer.Option(help="Show this many of the largest clusters.")] = 5,
    examples: Annotated[int, typer.Option(help="Example members shown per cluster.")] = 2,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Cluster counts and sizes per level and table, the largest clusters with example members
    (read at the version the level saw), benchmark matches and what curation dropped."""
    from schemas.dedup import DEDUP_LEVELS

    if level is not None and level not in DEDUP_LEVELS:
        raise typer.BadParameter(f"--level {level!r}: use one of {list(DEDUP_LEVELS)}")
    data = build_report(Lake(lake), level, table, top, examples)
    if fmt is OutputFormat.JSON:
        print_json(data)
        return
    if fmt is OutputFormat.CSV:
        print_rows(data["summary"], fmt)
        return
    print_rows(data["summary"], fmt, title="dedup clusters", columns=_SUMMARY_COLUMNS)
    print_rows(data["histogram"], fmt, title="cluster sizes")
    for cluster in data["top_clusters"]:
        console.print(
            f"[bold]{cluster['level']}[/] {cluster['table']} cluster of {cluster['size']} "
            f"(similarity {cluster['similarity']:.3f}) {cluster['id']}"
        )
        for example in cluster["examples"]:
            mark = "kept   " if example["kept"] else "dropped"
            console.print(f"  {mark} {example['id']}: {example['text']}", soft_wrap=True)
    if data["contamination"]:
        print_rows(
            data["contamination"],
            fmt,
            title="benchmark matches",
            columns=["row", "benchmark", "item", "overlap", "text"],
        )
    else:
        console.print("benchmark matches: none")
    print_rows(
        [
            {**d, "reasons": ", ".join(f"{k}={v}" for k, v in d["reasons"].items())}
            for d in data["decisions"]
        ],
        fmt,
        title="curation decisions (RowsDeduplicated events)",
        columns=["run_id", "table", "kept", "dropped", "reasons"],
    )


_SUMMARY_COLUMNS = ["level", "table", "clusters", "rows", "dropped"]


def pipeline_dedup(
    levels: Annotated[
        str,
        typer.Option(help="Levels to run, in this order: exact,near,semantic,contamination."),
    ] = "exact,near,semantic,contamination",
    near_threshold: Annotated[
        float | None, typer.Option(help="Jaccard that makes near copies (default 0.8).")
    ] = None,
    num_perm: Annotated[
        int | None, typer.Option(help="MinHash permutations of the near level (default 128).")
    ] = None,
    semantic_threshold: Annotated[
        float | None, typer.Option(help="Embedding cosine that makes paraphrases (default 0.97).")
    ] = None,
    min_overlap: Annotated[
        float | None,
        typer.Option(help="Share of a benchmark item's 8-grams that contaminates (default 0.5)."),
    ] = None,
    config: ConfigOption = None,
    master: MasterOption = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Snapshot the lake under this name at the end.")
    ] = None,
    allow_empty: AllowEmptyOption = False,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Exact, near (Spark MinHash LSH), semantic and benchmark-overlap dedup of tasks,
    trajectories and tool code; after each level, curate writes new versions of the curated
    tables without the dropped rows (history keeps them). A rerun changes nothing.
    A level that finds no copies, or a curate with nothing to drop, is not an empty output."""
    from astra.pipeline import outcome_rows, spark_factory
    from jobs.config import load_config
    from jobs.dedup.pipeline import dedup_jobs
    from jobs.params import ParamsError
    from jobs.runner import EmptyOutputError, run_jobs

    chosen = tuple(part.strip() for part in levels.split(",") if part.strip())
    params = {
        "near": {"threshold": near_threshold, "num_perm": num_perm},
        "semantic": {"threshold": semantic_threshold},
        "contamination": {"min_overlap": min_overlap},
    }
    try:
        jobs = dedup_jobs(
            chosen,  # type: ignore[arg-type]
            {k: {n: v for n, v in p.items() if v is not None} for k, p in params.items()},
        )
    except (TypeError, ValueError) as exc:
        raise ParamsError(str(exc)) from None
    settings = load_config(config, {"spark.master": master} if master else {})
    factory = spark_factory(settings)
    target = Lake(lake)
    try:
        with CountProgress() as progress:
            outcomes = run_jobs(
                target,
                jobs,
                seed=settings.seed,
                spark_factory=factory,
                on_stage=progress.stage,
                count_progress=progress,
                allow_empty=allow_empty,
            )
    except EmptyOutputError as exc:
        # The stages that ran; `astra.cli.main` prints the reason as one error line.
        print_rows(
            outcome_rows(exc.outcomes, dropped="found_or_dropped"),
            fmt,
            title="dedup pipeline, stopped",
        )
        raise
    finally:
        factory.stop()
    if snapshot:
        target.create_snapshot(snapshot, description="astra pipeline dedup")
    rows = outcome_rows(outcomes, dropped="found_or_dropped")
    print_rows(rows, fmt, title="dedup pipeline")
