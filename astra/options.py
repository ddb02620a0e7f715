"""Options shared by the ``astra`` commands: one place for their flags and help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astra.output import OutputFormat

DEFAULT_LAKE = "astra-lake"  # ./lake is the lake package itself

LakeOption = Annotated[
    str,
    typer.Option(
        "--lake",
        envvar="ASTRA_LAKE",
        help="Lake location: a folder or an object-store URI (s3://bucket/path).",
        show_envvar=True,
    ),
]
FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format", "-f", help="Output format: table for people, json or csv for scripts."
    ),
]
MasterOption = Annotated[
    str | None,
    typer.Option("--master", help="Spark master (default local[*]; a cluster: spark://HOST:7077)."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (see docs/astra.example.toml).")
]
SnapshotOption = Annotated[
    str | None,
    typer.Option("--snapshot", "-s", help="Read at this snapshot instead of the latest."),
]
AllowEmptyOption = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Run every stage even after one wrote no rows to a table although its inputs had "
        "rows; the reasons show in the note column. Without it the pipeline stops there "
        "(exit code 2); that stage's output is kept.",
    ),
]
