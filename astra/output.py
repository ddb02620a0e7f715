"""Rendering for the CLI: rich tables for people, JSON and CSV for scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

T = TypeVar("T")


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


# Piped or CI output is not a terminal; give tables room instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")


def print_rows(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Rows as a rich table, JSON (a list of objects) or CSV."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt is OutputFormat.JSON:
        print_json([{c: r.get(c) for c in columns} for r in rows])
        return
    if fmt is OutputFormat.CSV:
        frame = pl.DataFrame([{c: _cell(r.get(c)) for c in columns} for r in rows])
        sys.stdout.write(frame.write_csv())
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def print_frame(frame: pl.DataFrame, fmt: OutputFormat, title: str | None = None) -> None:
    if fmt is OutputFormat.CSV:
        flat = frame.with_columns(
            [
                pl.col(name).map_elements(
                    lambda v: json.dumps(to_jsonable(v)), return_dtype=pl.String
                )
                for name, dtype in frame.schema.items()
                if dtype.is_nested()
            ]
        )
        sys.stdout.write(flat.write_csv())
        return
    print_rows(frame.to_dicts(), fmt, title, frame.columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(to_jsonable(value), default=str)
        return text if len(text) <= 120 else text[:117] + "..."
    return str(value)


def progress_bars() -> Progress:
    """The CLI's progress display: bars on stderr that vanish when done (silent when stderr
    is not a terminal)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def rich_progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """A progress bar on stderr (silent when stderr is not a terminal)."""
    with progress_bars() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class CountProgress:
    """Live counts on stderr, one bar per description: a pipeline's current stage, each Spark
    stage's finished tasks, the rows each write produced. Use it as a context manager and pass
    it as ``count_progress``; silent when stderr is not a terminal."""

    def __init__(self) -> None:
        self._progress = progress_bars()
        self._tasks: dict[str, Any] = {}
        self._stage: Any = None

    def __enter__(self) -> CountProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def stage(self, name: str) -> None:
        """A pipeline moved on to stage ``name``: one line that names it."""
        if self._stage is None:
            self._stage = self._progress.add_task(f"stage {name}", total=None)
        else:
            self._progress.update(self._stage, description=f"stage {name}")

    def __call__(self, description: str, done: int, total: int) -> None:
        task = self._tasks.get(description)
        if task is None:
            self._tasks[description] = self._progress.add_task(
                description, total=total, completed=done
            )
        else:
            self._progress.update(task, total=total, completed=done)
