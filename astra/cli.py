"""The ``astra`` command line. Help text for every command and option lives here."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Annotated, Any

# Lance's Rust logger warns about routine events (such as creating a dataset); users need errors.
os.environ.setdefault("LANCE_LOG", "error")

import typer
from rich.markup import escape
from rich.tree import Tree

from astra.dedup_cli import app as dedup_app
from astra.dedup_cli import pipeline_dedup
from astra.env_cli import app as env_app
from astra.eval_cli import app as eval_app
from astra.options import (
    DEFAULT_LAKE,
    AllowEmptyOption,
    ConfigOption,
    FormatOption,
    LakeOption,
    MasterOption,
    SnapshotOption,
)
from astra.output import (
    CountProgress,
    OutputFormat,
    console,
    err_console,
    print_frame,
    print_json,
    print_rows,
    rich_progress,
    to_jsonable,
)
from astra.report_cli import app as report_app
from astra.search_cli import app as search_app
from astra.train_cli import app as train_app
from lake import Lake, LakeError
from lake.lineage import LineageNode, lineage
from sandbox.cli import app as sandbox_app
from schemas.events import (
    Event,
    RowsDeduplicated,
    RowsRejected,
    RunFailed,
    RunFinished,
    RunStarted,
    SnapshotCreated,
    TableCommitted,
    UncommittedVersionsDiscarded,
)

app = typer.Typer(
    help="ASTRA Lake: synthesize tool-use data and environments into a versioned lake, "
    "and train agents on pinned snapshots of it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
lake_app = typer.Typer(
    help="Inspect and manage the lake: tables, history, snapshots, lineage.", no_args_is_help=True
)
snapshot_app = typer.Typer(
    help="Create, list, show and diff immutable snapshots.", no_args_is_help=True
)
jobs_app = typer.Typer(
    help="List the jobs `astra run` knows and their params.", no_args_is_help=True
)
app.add_typer(lake_app, name="lake")
lake_app.add_typer(snapshot_app, name="snapshot")
app.add_typer(jobs_app, name="jobs")
app.add_typer(sandbox_app, name="sandbox")
pipeline_app = typer.Typer(help="Run the synthesis pipelines end to end.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(env_app, name="env")
app.add_typer(train_app, name="train")
app.add_typer(dedup_app, name="dedup")
pipeline_app.command("dedup")(pipeline_dedup)
app.add_typer(search_app, name="search")
app.add_typer(report_app, name="report")
app.add_typer(eval_app, name="eval")


class CliError(Exception):
    """An error to show as one clear line (what was wrong, what to do), with exit code 2."""


def open_lake(uri: str) -> Lake:
    return Lake(uri)


def summarize(event: Event) -> str:
    """One short line per event for the history table."""
    if isinstance(event, RunStarted):
        inputs = ", ".join(f"{i.table}@{i.version}" for i in event.inputs) or "none"
        return f"{event.job} seed={event.seed} inputs: {inputs}"
    if isinstance(event, TableCommitted):
        return f"{event.operation} {event.rows_written} rows, {event.rows_total} in table"
    if isinstance(event, RowsRejected):
        return f"{event.rows} rejected: " + ", ".join(f"{k}={v}" for k, v in event.reasons.items())
    if isinstance(event, RunFinished):
        return "outputs: " + (", ".join(f"{o.table}@{o.version}" for o in event.outputs) or "none")
    if isinstance(event, RunFailed):
        return f"{event.error_type}: {event.error[:100]}"
    if isinstance(event, SnapshotCreated):
        return f"{event.name}: " + ", ".join(f"{p.table}@{p.version}" for p in event.tables)
    if isinstance(event, UncommittedVersionsDiscarded):
        return f"rolled back versions {list(event.discarded)} of a run that died"
    if isinstance(event, RowsDeduplicated):
        reasons = ", ".join(f"{k}={v}" for k, v in event.reasons.items())
        return f"dropped {len(event.dropped)} ({reasons}), kept {event.kept}"
    return ""


# -- astra lake -------------------------------------------------------------------------------


@lake_app.command("tables")
def lake_tables(lake: LakeOption = DEFAULT_LAKE, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """List every table with its current committed version and row count."""
    opened = open_lake(lake)
    rows = [{"table": t.table, "version": t.version, "rows": t.rows} for t in opened.tables()]
    print_rows(rows, fmt, title=f"tables in {opened.uri}")


@lake_app.command("show")
def lake_show(
    table: Annotated[str, typer.Argument(help="Table name, e.g. tools.")],
    lake: LakeOption = DEFAULT_LAKE,
    version: Annotated[int | None, typer.Option(help="Read this committed version.")] = None,
    snapshot: SnapshotOption = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 10,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show the first rows of a table (latest, at a version, or at a snapshot)."""
    view = open_lake(lake).read(table, version=version, snapshot=snapshot)
    frame = view.to_polars().head(limit).collect()
    print_frame(frame, fmt, title=f"{table} @ version {view.version}")


@lake_app.command("history")
def lake_history(
    table: Annotated[str | None, typer.Argument(help="Only events about this table.")] = None,
    lake: LakeOption = DEFAULT_LAKE,
    run: Annotated[str | None, typer.Option("--run", help="Only events of this run.")] = None,
    limit: Annotated[int, typer.Option(help="Show the last N events.")] = 50,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """The event log (newest last): runs, commits, rejects, snapshots."""
    events = open_lake(lake).events(table=table, run_id=run)[-limit:]
    rows = []
    for position, event in events:
        rows.append(
            {
                "position": position,
                "time": event.time,
                "event": type(event).__name__,
                "run_id": event.run_id,
                "table": getattr(event, "table", None),
                "version": getattr(event, "version", None),
                "detail": event.payload() if fmt is not OutputFormat.TABLE else summarize(event),
            }
        )
    print_rows(rows, fmt, title="event history")


@lake_app.command("runs")
def lake_runs(lake: LakeOption = DEFAULT_LAKE, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Every run with its job, status, outputs and the outputs it left empty (and why)."""
    import polars as pl

    opened = open_lake(lake)
    empty = {
        r.run_id: "; ".join(f"{t}: {why}" for t, why in r.finished.metrics["empty"].items())
        for r in opened.runs()
        if r.finished is not None and r.finished.metrics.get("empty")
    }
    frame = opened.query("SELECT * FROM runs").with_columns(
        pl.col("run_id").replace_strict(empty, default="", return_dtype=pl.String).alias("empty")
    )
    print_frame(frame, fmt, title="runs")


@lake_app.command("query")
def lake_query(
    sql: Annotated[
        str,
        typer.Argument(
            help="Polars SQL over the tables, e.g. "
            '"SELECT domain, count(*) FROM tools GROUP BY domain".'
        ),
    ],
    lake: LakeOption = DEFAULT_LAKE,
    snapshot: SnapshotOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Query the lake with SQL (polars). Tables: every data table plus events, runs, snapshots."""
    try:
        frame = open_lake(lake).query(sql, snapshot=snapshot)
    except Exception as exc:  # polars raises several SQL error types
        if isinstance(exc, LakeError):
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(
            f"query failed: {first_line}. Check names with `astra lake tables` and "
            "`astra lake show TABLE`."
        ) from exc
    print_frame(frame, fmt)


def _lineage_tree(node: LineageNode, tree: Tree | None = None) -> Tree:
    if node.found:
        run = f"[dim]run {node.run_id} ({node.job})[/]"
        text = f"[bold]{node.table}[/] {node.row_id}  {node.label}  {run}"
    else:
        text = f"[red]{node.table or '?'} {node.row_id} (not found)[/]"
    branch = Tree(text) if tree is None else tree.add(text)
    for parent in node.parents:
        _lineage_tree(parent, branch)
    return branch


@lake_app.command("lineage")
def lake_lineage(
    row_id: Annotated[str, typer.Argument(help="A row id, e.g. tool-3f2a...")],
    lake: LakeOption = DEFAULT_LAKE,
    snapshot: SnapshotOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Walk a row's parents up to the source tool schemas, with the run behind each step."""
    try:
        root = lineage(open_lake(lake), row_id, snapshot=snapshot)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    if not root.found:
        raise CliError(f"row {row_id!r} is not in the lake; find ids with `astra lake show TABLE`")
    if fmt is OutputFormat.TABLE:
        console.print(_lineage_tree(root))
    else:
        print_json(root)


@lake_app.command("replay")
def lake_replay(
    run_id: Annotated[str, typer.Argument(help="The run to re-execute (see `astra lake runs`).")],
    lake: LakeOption = DEFAULT_LAKE,
    scratch: Annotated[
        Path | None, typer.Option(help="Empty folder for the scratch lake (default: a temp dir).")
    ] = None,
    master: MasterOption = None,
    config: ConfigOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Re-execute a recorded run from its event alone into a scratch lake and compare hashes."""
    from astra.pipeline import spark_factory
    from jobs.replay import replay_run

    target = scratch or Path(tempfile.mkdtemp(prefix="astra-replay-"))
    factory = spark_factory(_config(config, master))  # starts Spark only if the job needs it
    try:
        report = replay_run(open_lake(lake), run_id, target, spark_factory=factory)
    finally:
        factory.stop()
    if fmt is OutputFormat.JSON:
        print_json({**to_jsonable(report), "matches": report.matches})
    else:
        rows = [
            {"table": t.table, "recorded": t.recorded, "replayed": t.replayed, "match": t.matches}
            for t in report.tables
        ]
        print_rows(rows, fmt, title=f"replay of {run_id} ({report.job}) in {report.scratch_uri}")
        if not report.fingerprint_matches:
            err_console.print("[yellow]the run's external input (fingerprint) has changed since[/]")
        verdict = "[green]outputs match[/]" if report.matches else "[red]outputs differ[/]"
        console.print(verdict)
    if not report.matches:
        raise typer.Exit(1)


@lake_app.command("export-sft")
def lake_export_sft(
    out: Annotated[Path, typer.Option(help="A .jsonl file, or a folder for --as hf.")],
    as_: Annotated[
        str,
        typer.Option("--as", help="jsonl (OpenAI chat fine-tuning rows) or hf (datasets folder)."),
    ] = "jsonl",
    split: Annotated[str, typer.Option(help="train, eval or all.")] = "train",
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Export sft_examples as OpenAI-messages JSONL or a Hugging Face dataset."""
    from jobs.export import export_hf, export_jsonl, sft_rows

    if as_ not in ("jsonl", "hf"):
        raise CliError(f"--as {as_!r}: use jsonl or hf")
    if split not in ("train", "eval", "all"):
        raise CliError(f"--split {split!r}: use train, eval or all")
    rows = sft_rows(open_lake(lake), snapshot, split)  # type: ignore[arg-type]
    written = export_jsonl(rows, out) if as_ == "jsonl" else export_hf(rows, out)
    console.print(f"wrote {len(rows)} {split} examples to {written}")


@lake_app.command("migrate")
def lake_migrate(
    table: Annotated[str, typer.Argument(help="The table stored at an older schema version.")],
    lake: LakeOption = DEFAULT_LAKE,
) -> None:
    """Rewrite a table at the current schema version (rows upcast) as a new version."""
    result = open_lake(lake).migrate(table)
    console.print(f"{table}: version {result.version}, {result.rows} rows at the current schema")


# -- astra lake snapshot ------------------------------------------------------------------------


@snapshot_app.command("create")
def snapshot_create(
    name: Annotated[str, typer.Argument(help="A new, unique snapshot name.")],
    lake: LakeOption = DEFAULT_LAKE,
    description: Annotated[str, typer.Option(help="What this snapshot is for.")] = "",
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Pin the current version of every table under NAME (immutable)."""
    with console.status(f"hashing tables for snapshot {name}..."):
        record = open_lake(lake).create_snapshot(name, description)
    _print_snapshot(record, fmt)


def _print_snapshot(record: Any, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        print_json(record)
        return
    rows = [
        {"table": p.table, "version": p.version, "rows": p.rows, "content_hash": p.content_hash}
        for p in record.tables
    ]
    print_rows(rows, fmt, title=f"snapshot {record.name} (log position {record.log_position})")


@snapshot_app.command("list")
def snapshot_list(lake: LakeOption = DEFAULT_LAKE, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """List snapshots."""
    rows = [
        {
            "name": s.name,
            "created_at": s.created_at,
            "tables": len(s.tables),
            "rows": sum(p.rows for p in s.tables),
            "description": s.description,
        }
        for s in open_lake(lake).snapshots()
    ]
    print_rows(
        rows,
        fmt,
        title="snapshots",
        columns=["name", "created_at", "tables", "rows", "description"],
    )


@snapshot_app.command("show")
def snapshot_show(
    name: Annotated[str, typer.Argument(help="Snapshot name.")],
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Show the tables, versions, row counts and content hashes a snapshot pins."""
    _print_snapshot(open_lake(lake).snapshot(name), fmt)


@snapshot_app.command("diff")
def snapshot_diff(
    a: Annotated[str, typer.Argument(help="Older snapshot.")],
    b: Annotated[str, typer.Argument(help="Newer snapshot.")],
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Rows added and removed per table between two snapshots (by row id)."""
    rows = [to_jsonable(d) for d in open_lake(lake).diff_snapshots(a, b)]
    print_rows(rows, fmt, title=f"{a} -> {b}")


# -- astra run / jobs -----------------------------------------------------------------------------


@app.command("run")
def run_command(
    job: Annotated[str, typer.Argument(help="Job name; list them with `astra jobs list`.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A job param as key=value (repeat for more)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for everything random in the job.")] = 0,
    snapshot: SnapshotOption = None,
    master: MasterOption = None,
    config: ConfigOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Run one job. An identical earlier run (same inputs, params, seed, code) is a no-op."""
    # Imported here: they pull in pyspark, which `astra --help` and `astra lake ...` never need.
    from astra.pipeline import api_key, spark_factory
    from jobs.params import parse_params
    from jobs.registry import get_job
    from jobs.runner import run_job
    from jobs.stages import SparkStage

    try:
        job_cls = get_job(job)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    params = parse_params(job_cls.Params, list(param or []))
    settings = _config(config, master)
    instance = job_cls(params)
    if isinstance(instance, SparkStage):
        instance.with_api_key(api_key(settings))
    factory = spark_factory(settings)  # starts Spark only if the job asks for it
    try:
        with CountProgress() as counts:
            result = run_job(
                open_lake(lake),
                instance,
                seed=seed,
                snapshot=snapshot,
                progress=rich_progress,
                count_progress=counts,
                spark_factory=factory,
            )
    finally:
        factory.stop()
    for table, reason in result.empty.items():
        err_console.print(
            f"[yellow]warning:[/] {job} wrote no {table}: {escape(reason)}", soft_wrap=True
        )
    if fmt is OutputFormat.JSON:
        print_json(result)
        return
    state = "reused an identical earlier run" if result.reused else "finished"
    console.print(f"[bold]{job}[/] {state}: run {result.run.run_id}")
    rows = [
        {
            "table": c.table,
            "version": c.version,
            "rows_written": c.rows_written,
            "rows_total": c.rows_total,
        }
        for c in result.run.commits
    ]
    print_rows(rows, fmt, title="outputs")
    if result.dropped:
        print_rows(
            [{"reason": k, "rows": v} for k, v in result.dropped.items()], fmt, title="dropped"
        )


@jobs_app.command("list")
def jobs_list(fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Every job with its inputs and outputs."""
    from jobs.registry import JOBS

    rows = [
        {
            "job": j.name,
            "version": j.version,
            "inputs": ", ".join(j.inputs) or "-",
            "outputs": ", ".join(j.outputs),
            "description": j.description,
        }
        for j in JOBS.values()
    ]
    print_rows(rows, fmt, title="jobs")


@jobs_app.command("show")
def jobs_show(
    job: Annotated[str, typer.Argument(help="Job name.")], fmt: FormatOption = OutputFormat.TABLE
) -> None:
    """A job's params: name, type, default and help."""
    from jobs.params import describe_params
    from jobs.registry import get_job

    try:
        job_cls = get_job(job)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    rows = [
        {"param": n, "type": t, "default": d, "help": h}
        for n, t, d, h in describe_params(job_cls.Params)
    ]
    print_rows(rows, fmt, title=f"{job_cls.name}: {job_cls.description}")


# -- astra pipeline ----------------------------------------------------------------------------


def _config(path: Path | None, master: str | None, overrides: list[str] | None = None) -> Any:
    from jobs.config import load_config

    values: dict[str, str] = {}
    for pair in overrides or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"--set {pair!r} must look like section.key=value")
        values[key.strip()] = value.strip()
    if master:
        values["spark.master"] = master
    return load_config(path, values)


@pipeline_app.command("trajectories")
def pipeline_trajectories(
    source: Annotated[
        str, typer.Option(help="Tool catalog to start from: a file, a folder or builtin:sample.")
    ] = "builtin:sample",
    config: ConfigOption = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set synthesis.max_turns=8."),
    ] = None,
    master: MasterOption = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Snapshot the lake under this name at the end.")
    ] = None,
    allow_empty: AllowEmptyOption = False,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Tool catalog -> tool graph -> chains -> tasks -> trajectories -> rewards -> SFT set.

    Each stage is a job on Spark; rerunning with the same inputs and config is a no-op.
    A stage that writes no rows although its inputs had rows stops the pipeline and says why.
    """
    from astra.pipeline import run_trajectory_pipeline

    settings = _config(config, master, overrides)
    _run_pipeline(
        lake,
        snapshot,
        fmt,
        f"trajectory pipeline ({settings.llm.backend} backend)",
        f"astra pipeline trajectories from {source}",
        lambda target, progress: run_trajectory_pipeline(
            target,
            settings,
            source,
            progress.stage,
            count_progress=progress,
            allow_empty=allow_empty,
        ),
    )


@pipeline_app.command("environments")
def pipeline_environments(
    config: ConfigOption = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set environments.min_steps=3."),
    ] = None,
    master: MasterOption = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Snapshot the lake under this name at the end.")
    ] = None,
    allow_empty: AllowEmptyOption = False,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Trajectories -> QA traces -> sandbox-verified tools -> RL environments.

    Needs the trajectory pipeline's tables in the lake (run `astra pipeline trajectories`).
    A stage that writes no rows although its inputs had rows stops the pipeline and says why.
    """
    from astra.pipeline import run_environment_pipeline

    settings = _config(config, master, overrides)
    _run_pipeline(
        lake,
        snapshot,
        fmt,
        "environment pipeline",
        "astra pipeline environments",
        lambda target, progress: run_environment_pipeline(
            target, settings, progress.stage, count_progress=progress, allow_empty=allow_empty
        ),
    )


def _run_pipeline(
    lake: str,
    snapshot: str | None,
    fmt: OutputFormat,
    title: str,
    description: str,
    run: Any,
) -> None:
    """Run a pipeline and print its outcome table. A stage that left an output empty stops
    it: the table of the stages that ran is printed, then ``EmptyOutputError`` goes up to
    ``main`` (one error line, exit code 2) and no snapshot is taken."""
    from astra.pipeline import outcome_rows
    from jobs.runner import EmptyOutputError

    target = open_lake(lake)
    try:
        with CountProgress() as progress:
            outcomes = run(target, progress)
    except EmptyOutputError as exc:
        print_rows(outcome_rows(exc.outcomes), fmt, title=f"{title}, stopped")
        raise
    if snapshot:
        target.create_snapshot(snapshot, description=description)
    print_rows(outcome_rows(outcomes), fmt, title=title)


def main() -> None:
    """Entry point: runs the app and turns known errors into one clear line and exit code 2."""
    # pyspark 4.3 warns about pandas 3 although we use only its Arrow paths; Spark's Python
    # worker daemon forks after lance is imported, but each worker opens its own datasets.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message="lance is not fork-safe")
    from jobs.config import ConfigError
    from jobs.ingest import CatalogError
    from jobs.params import ParamsError
    from jobs.replay import ReplayError
    from jobs.reports import ReportError
    from jobs.runner import EmptyOutputError
    from training.evals.bfcl import BFCLError
    from training.pinned import UnpinnedInputError

    try:
        app()
    except EmptyOutputError as exc:
        # Only pipelines raise it, after printing the outcome table of the stages that ran.
        err_console.print(
            f"[red]error:[/] {escape(str(exc))}; pass --allow-empty to continue anyway",
            soft_wrap=True,
        )
        sys.exit(2)
    except (
        CliError,
        LakeError,
        ParamsError,
        CatalogError,
        ReplayError,
        ConfigError,
        UnpinnedInputError,
        BFCLError,
        ReportError,
    ) as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(2)
    except KeyError as exc:
        err_console.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}", soft_wrap=True)
        sys.exit(2)
