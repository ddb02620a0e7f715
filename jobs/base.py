"""The job abstraction: a small declared unit of batch work over lake tables.

A job names its input and output tables, has a frozen ``Params`` dataclass and one ``run``.
It reads inputs pinned at the versions its run recorded, writes only its declared outputs,
and counts what it kept and dropped, by reason, through the context. Where it runs (in
process, or on Spark) is the runner's business, not the job's.

No silent empty output: a data output that gets no rows although every input had some is
reported by the runner (``JobResult.empty``, the run's ``metrics["empty"]``), and pipelines
stop there. The rule for which outputs must get rows lives in :meth:`Job.required_outputs`:
every declared output except the side tables (:data:`SIDE_TABLES`) and those a job lists in
``may_be_empty`` because writing nothing is a correct answer for them (a dedup level that
finds no copies). A job that knows why it wrote nothing says so with
:meth:`JobContext.explain_empty`; otherwise the reason is built from its input row counts and
what it dropped.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from lake import Lake, Run, RunResult, TableView, WriteReport

T = TypeVar("T")

ProgressFn = Callable[[Iterable[Any], int | None, str], Iterable[Any]]
"""Wraps an iterable to show progress: ``(items, total, description) -> items``."""

CountProgressFn = Callable[[str, int, int], None]
"""Reports a count as it changes: ``(description, done, total)`` (Spark tasks, rows written)."""


def no_progress(items: Iterable[T], total: int | None, description: str) -> Iterable[T]:
    return items


SIDE_TABLES: frozenset[str] = frozenset({"llm_calls", "rejects"})
"""Outputs that record how a job worked, not what it made: never required to get rows (an
offline stage makes no LLM calls; a clean input has no rejects)."""


@dataclass(frozen=True)
class NoParams:
    """A job without parameters."""


class Job(ABC):
    """Subclasses set ``name``, ``version`` (bump it when the output for the same input changes),
    ``inputs``, ``outputs`` and ``Params``, and implement ``run``.

    ``may_be_empty`` lists the data outputs for which no rows is a correct result (dedup
    clusters when nothing repeats); every other output that is not a side table must get
    rows whenever every input has some, or the run is reported as empty."""

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]]
    may_be_empty: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{self.name} takes {self.Params.__name__}, got {type(params).__name__}"
            )
        self.params = params

    def fingerprint(self) -> str:
        """Anything besides the input tables that the output depends on (e.g. a source file's
        hash). It is part of the run key, so a changed source is a new run."""
        return ""

    @abstractmethod
    def run(self, ctx: JobContext) -> None: ...

    @classmethod
    def code_version(cls) -> str:
        return f"{cls.name}@{cls.version}"

    @classmethod
    def required_outputs(cls) -> tuple[str, ...]:
        """The outputs that must get rows when every input has rows: all declared outputs
        but the side tables (:data:`SIDE_TABLES`) and ``may_be_empty``."""
        return tuple(t for t in cls.outputs if t not in SIDE_TABLES and t not in cls.may_be_empty)


@dataclass
class JobContext:
    """What a running job sees: its pinned inputs, its run to write to, counters, progress."""

    job: Job
    run: Run
    inputs: dict[str, TableView]
    seed: int
    progress: ProgressFn = no_progress
    count_progress: CountProgressFn | None = None
    spark_factory: Callable[[], Any] | None = None
    kept: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    empty_reasons: dict[str, str] = field(default_factory=dict)
    _spark: Any = None

    @property
    def spark(self) -> Any:
        """The run's SparkSession (``pyspark.sql.SparkSession``), started on first use."""
        if self._spark is None:
            if self.spark_factory is None:
                raise RuntimeError(
                    f"{self.job.name} needs Spark but the runner was given no spark_factory; "
                    "run it through `astra run` or pass jobs.spark.SparkSessionFactory(...)"
                )
            self._spark = self.spark_factory()
        return self._spark

    def read(self, table: str) -> TableView:
        if table not in self.inputs:
            raise KeyError(f"{self.job.name} did not declare {table!r} as an input")
        return self.inputs[table]

    def _check_output(self, table: str) -> None:
        if table not in self.job.outputs and table != "rejects":
            raise KeyError(f"{self.job.name} did not declare {table!r} as an output")

    def append(self, table: str, data: pa.Table, source: str | None = None) -> WriteReport:
        self._check_output(table)
        report = self.run.append(table, data, source or self.job.name)
        self._count_write(report)
        return report

    def upsert(self, table: str, data: pa.Table, source: str | None = None) -> WriteReport:
        self._check_output(table)
        report = self.run.upsert(table, data, source or self.job.name)
        self._count_write(report)
        return report

    def replace(self, table: str, data: pa.Table, source: str | None = None) -> WriteReport:
        """The table becomes exactly ``data`` (earlier versions stay in history)."""
        self._check_output(table)
        report = self.run.replace(table, data, source or self.job.name)
        self._count_write(report)
        return report

    def _count_write(self, report: WriteReport) -> None:
        self.kept[report.table] += report.rows
        for reason, n in report.reject_reasons.items():
            self.dropped[reason] += n

    def quarantine(self, table: str, payload: Any, reason: str, source: str) -> None:
        """An input that cannot become a row: stored in ``rejects`` with the reason, counted."""
        self.run.quarantine(table, payload, reason, source)
        self.dropped[reason.split(":", 1)[0]] += 1

    def explain_empty(self, table: str, reason: str) -> None:
        """Say why ``table`` (a declared output) may get no rows, in words a user can act on,
        e.g. ``ctx.explain_empty("tool_edges", "0 of 429 tools have an output schema")``.

        Call it where the job learns the reason (before or after writing; in a Spark stage,
        on the driver, e.g. after ``finish`` returned 0). If the table does get no rows, this
        reason is reported instead of the generic one built from input row counts and drops;
        if it gets rows, the reason is ignored. A later call for the same table replaces it.
        """
        self._check_output(table)
        if not reason.strip():
            raise ValueError(f"{self.job.name}: explain_empty({table!r}) needs a reason")
        self.empty_reasons[table] = reason.strip()

    def track(self, items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        yield from self.progress(items, total, description)


@dataclass(frozen=True)
class JobResult:
    """What ``run_job`` did: the run, rows kept per table and dropped per reason, and
    ``empty``: each required output that got no rows although every input had rows, with
    the reason (the job's own, else one built from its inputs and drops). A reused run has
    nothing in ``kept``, ``dropped`` or ``empty``; what it recorded is in ``run.metrics``."""

    job: str
    run: RunResult
    kept: dict[str, int]
    dropped: dict[str, int]
    empty: dict[str, str] = field(default_factory=dict)

    @property
    def reused(self) -> bool:
        return self.run.reused


def params_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)


__all__ = [
    "SIDE_TABLES",
    "CountProgressFn",
    "Job",
    "JobContext",
    "JobResult",
    "Lake",
    "NoParams",
    "ProgressFn",
    "no_progress",
    "params_dict",
]
