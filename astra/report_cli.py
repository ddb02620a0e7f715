"""``astra report``: reports over pinned snapshots, written as files (HTML, PNG, JSON).

Each command is one function below; a new report is one more command appended at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astra.options import DEFAULT_LAKE, FormatOption, LakeOption
from astra.output import OutputFormat, console, print_json, print_rows

app = typer.Typer(
    help="Reports over pinned snapshots: self-contained HTML with plots, plus JSON.",
    no_args_is_help=True,
)

ReportSnapshot = Annotated[
    str,
    typer.Option(
        "--snapshot", "-s", help="The snapshot to report on (see `astra lake snapshot list`)."
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Folder for report.html, its PNGs and report.json (default: reports/...)."
    ),
]


@app.command("rewards")
def report_rewards(
    snapshot: ReportSnapshot,
    vs: Annotated[
        str | None,
        typer.Option(
            "--vs", help="A baseline snapshot: adds per-dimension drift tests and spam trends."
        ),
    ] = None,
    out: OutOption = None,
    outliers: Annotated[int, typer.Option(help="Outlier rows to list, with lineage.")] = 10,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Audit a snapshot's rewards: per-dimension histograms, judge missing/failed counts,
    reward vs length and tool calls, per-environment mean and variance, wasted RL groups,
    tool-spam signals, drift against --vs (KS test) and the top outliers with lineage."""
    from jobs.reports.render import write_report
    from jobs.reports.rewards import audit_rewards
    from lake import Lake

    target = out or Path("reports") / (f"rewards-{snapshot}" + (f"-vs-{vs}" if vs else ""))
    with console.status(f"auditing rewards of {snapshot}"):
        audit = audit_rewards(Lake(lake), snapshot, vs, outlier_limit=outliers)
        files = write_report(audit, target)
    groups = audit.groups
    summary = {
        "snapshot": audit.snapshot,
        "vs": audit.vs,
        "dimensions": len(audit.dimensions),
        "judged": sum(d.ok for d in audit.dimensions),
        "missing": sum(d.missing for d in audit.dimensions),
        "failed": sum(d.failed for d in audit.dimensions),
        "rollout_groups": groups.groups if groups else 0,
        "wasted_group_share": groups.wasted_share if groups else None,
        "spam_flagged": any(s.flagged for s in audit.spam),
        "drifted": [d.dimension for d in audit.drift if d.drifted],
        "outliers": len(audit.outliers),
        "html": str(files.html),
        "json": str(files.json),
        "pngs": [str(p) for p in files.pngs],
    }
    if fmt is OutputFormat.JSON:
        print_json(summary)
        return
    rows = [
        {"figure": k, "value": v} for k, v in summary.items() if k not in ("html", "json", "pngs")
    ]
    print_rows(rows, fmt, title=f"reward audit of {snapshot}")
    if fmt is OutputFormat.TABLE:
        console.print(f"report: {files.html}")


@app.command("evals")
def report_evals(
    benchmark: Annotated[
        str | None, typer.Option(help="Only this benchmark (e.g. bfcl); default: all.")
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Only this category (repeatable).")
    ] = None,
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", "-s", help="Read the evals table at this snapshot."),
    ] = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Compare checkpoints on the evals table: accuracy per checkpoint, settings and category
    (passed over entries with a verdict); lake checkpoints are labelled with kind and step."""
    from jobs.reports import ReportError
    from lake import Lake
    from schemas import Checkpoint, Eval
    from training.evals.report import compare

    opened = Lake(lake)
    written = {t.table for t in opened.tables() if t.version is not None}
    if "evals" not in written:
        raise ReportError(
            f"the lake {opened.uri} has no evals yet; run `astra eval bfcl --model PATH` first"
        )
    rows = [
        Eval.from_record(r) for r in opened.read("evals", snapshot=snapshot).to_arrow().to_pylist()
    ]
    rows = [
        r
        for r in rows
        if (benchmark is None or r.benchmark == benchmark)
        and (not category or r.category in category)
    ]
    checkpoints = {}
    if "checkpoints" in written:
        checkpoints = {
            c.id: c
            for c in (
                Checkpoint.from_record(r) for r in opened.read("checkpoints").to_arrow().to_pylist()
            )
        }
    print_rows(compare(rows, checkpoints), fmt, title=f"evaluations in {opened.uri}")
