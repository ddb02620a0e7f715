"""Spark for lake jobs: sessions, a distributed read of a pinned table, a distributed write.

There is no Lance connector for Spark on this stack, so the bridge is Arrow:

- ``read_table`` runs one task per Lance fragment of a pinned version. Each task opens
  ``lance.dataset(uri, version=v)`` itself and streams ``get_fragment(fid).to_batches()`` out of
  ``mapInArrow``; only the URI, version and storage options travel to the executors.
- ``write_table`` hash-partitions the rows by ``id``; each task validates its rows with
  ``lake.validation.prepare_rows`` (which orders and casts columns by name: Lance maps columns by
  field id, so a fragment written in another column order would read back as garbage), sorts
  them by ``id`` and writes Lance fragments with ``lance.fragment.write_fragments``. The driver
  collects the fragments' JSON and the rejects, in partition order, and stages them on the run,
  which commits once at its end. Same input and partition count, same rows in the same order:
  the output content hash does not depend on where or in what order tasks ran.

Running on a cluster
--------------------
Give ``SparkConfig(master="spark://host:7077")`` to ``SparkSessionFactory`` and pass that to
``jobs.runner.run_job(..., spark_factory=...)``; or ``spark-submit --master spark://host:7077
driver.py`` with a driver that does the same (the factory then joins the session spark-submit
configured, as long as the masters agree). Requirements:

- every executor host has the same virtual environment at the same path as the driver
  (``SparkConfig.python`` is passed as ``spark.pyspark.python``, so executors run exactly that
  interpreter and import ``lake``, ``schemas`` and ``jobs`` from it);
- every executor can reach the lake URI: a shared filesystem path mounted at the same place, or
  an object store (``s3://...``) with the lake's ``storage_options``;
- executors can connect back to the driver (``spark.driver.host``; set it in ``extra_conf``
  when the driver's hostname does not resolve from the workers).

Only the driver commits, under the lake's commit lock, so executors need no lock.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import FragmentMetadata, write_fragments

from lake import Run, SchemaMismatchError, TableView, UnknownTableError
from lake.errors import RunStateError
from lake.validation import prepare_rows
from schemas import DATA_TABLES, Reject, Row, TableModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

LogLevel = Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]

ProgressCallback = Callable[[str, int, int], None]
"""Receives ``(description, done, total)``: tasks of a stage, or rows of a write."""

logger = logging.getLogger("astra.spark")

LOG4J_CONFIG = Path(__file__).with_name("spark-log4j2.properties")

_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?|spark://[^/\s]+|yarn|k8s://\S+)$")


@dataclass(frozen=True)
class SparkConfig:
    """How to start Spark for a job.

    >>> SparkConfig(master="local[2]").conf()["spark.sql.shuffle.partitions"]
    '4'
    >>> SparkConfig(master="mesos://x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: master 'mesos://x' is not a Spark master URL: use local, local[N], ...
    """

    master: str = field(
        default="local[*]",
        metadata={"help": "Spark master: local[*] (default), local[N], spark://HOST:PORT, yarn"},
    )
    app_name: str = field(default="astra-lake", metadata={"help": "application name"})
    python: str = field(
        default=sys.executable,
        metadata={"help": "Python interpreter the executors run (the same venv path everywhere)"},
    )
    shuffle_partitions: int = field(
        default=4, metadata={"help": "spark.sql.shuffle.partitions, and write_table's partitions"}
    )
    log_level: LogLevel = field(default="ERROR", metadata={"help": "Spark log level"})
    extra_conf: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"help": "further Spark settings as (key, value) pairs"}
    )

    def __post_init__(self) -> None:
        if not _MASTER.match(self.master):
            raise ValueError(
                f"master {self.master!r} is not a Spark master URL: use local, local[N], "
                "local[*], spark://HOST:PORT, yarn or k8s://URL"
            )
        if not self.app_name.strip():
            raise ValueError("app_name must not be empty; name the application, e.g. 'astra-lake'")
        if not Path(self.python).is_file():
            raise ValueError(
                f"python {self.python!r} does not exist; point it at the venv's interpreter "
                "(the same path on every executor host)"
            )
        if self.shuffle_partitions < 1:
            raise ValueError(
                f"shuffle_partitions must be at least 1, got {self.shuffle_partitions}; "
                "use a small multiple of the total executor cores"
            )
        if self.log_level not in LogLevel.__args__:  # type: ignore[attr-defined]
            raise ValueError(
                f"log_level {self.log_level!r} is not one of {list(LogLevel.__args__)}"  # type: ignore[attr-defined]
            )
        for pair in self.extra_conf:
            if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise ValueError(
                    f"extra_conf entries must be (key, value) string pairs, got {pair!r}"
                )

    def conf(self) -> dict[str, str]:
        """Every Spark setting this config implies (``extra_conf`` last, so it wins)."""
        settings = {
            "spark.pyspark.python": self.python,
            "spark.pyspark.driver.python": self.python,
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.session.timeZone": "UTC",
            "spark.executorEnv.LANCE_LOG": "error",
            # The driver JVM starts without Spark's log banners (an extra_conf of the same key
            # replaces this; under spark-submit the driver is already running and ignores it).
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
        }
        settings.update(dict(self.extra_conf))
        return settings


class SparkSessionFactory:
    """Starts the SparkSession of a ``SparkConfig`` once and returns it on every call.

    This is what ``jobs.runner.run_job(..., spark_factory=...)`` takes.
    """

    def __init__(self, config: SparkConfig | None = None) -> None:
        self.config = config or SparkConfig()
        self._session: SparkSession | None = None
        self._lock = threading.Lock()

    def __call__(self) -> SparkSession:
        with self._lock:
            if self._session is None:
                self._session = self._start()
            return self._session

    def _start(self) -> SparkSession:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None and active.sparkContext.master != self.config.master:
            raise RuntimeError(
                f"a SparkSession on {active.sparkContext.master!r} is already running in this "
                f"process; stop it before starting one on {self.config.master!r}"
            )
        # PySpark picks the Python of local workers from this variable when the context starts,
        # not from spark.pyspark.python (which only spark-submit reads): without it, workers
        # run the system python3, which cannot import lance.
        os.environ["PYSPARK_PYTHON"] = self.config.python
        builder = SparkSession.builder.master(self.config.master).appName(self.config.app_name)
        for key, value in self.config.conf().items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        if session.sparkContext.master != self.config.master:
            raise RuntimeError(
                f"joined a running SparkContext on {session.sparkContext.master!r}, not "
                f"{self.config.master!r}; stop it first, or configure the same master"
            )
        session.sparkContext.setLogLevel(self.config.log_level)
        return session

    def stop(self) -> None:
        """Stop the session if this factory started one; the next call starts a new one."""
        with self._lock:
            if self._session is not None:
                self._session.stop()
                self._session = None


# -- progress ------------------------------------------------------------------------------


class SparkProgress:
    """Reports the task counts of the Spark stages run inside it, through ``callback``.

    Inside the ``with`` block every Spark job runs in its own job group; a thread polls
    ``statusTracker()`` every ``interval_s`` seconds and reports ``(description, done, total)``
    whenever a stage's completed-task count changes; on exit each stage's final count is
    reported once more, so even a stage quicker than one poll is seen.
    """

    def __init__(
        self,
        spark: SparkSession,
        callback: ProgressCallback | None,
        description: str,
        interval_s: float = 0.5,
    ) -> None:
        self.spark = spark
        self.callback = callback
        self.description = description
        self.interval_s = interval_s
        self.group = f"astra-{uuid.uuid4().hex[:12]}"
        self._seen: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _report_stages(self) -> None:
        assert self.callback is not None
        tracker = self.spark.sparkContext.statusTracker()
        for job_id in sorted(tracker.getJobIdsForGroup(self.group)):
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            for stage_id in sorted(job.stageIds):
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                if stage.numCompletedTasks == 0 and stage.numActiveTasks == 0:
                    continue  # not started yet, or skipped (its shuffle output was reused)
                state = (stage.numCompletedTasks, stage.numTasks)
                if self._seen.get(stage_id) != state:
                    self._seen[stage_id] = state
                    self.callback(f"{self.description}: stage {stage_id}", *state)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._report_stages()

    def __enter__(self) -> SparkProgress:
        if self.callback is None:
            return self
        self.spark.sparkContext.setJobGroup(self.group, self.description)
        self._thread = threading.Thread(target=self._poll, name=self.group, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.callback is None or self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._report_stages()
        self.spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        self.spark.sparkContext.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]


def log_progress(description: str, done: int, total: int) -> None:
    """A ``ProgressCallback`` that logs to the ``astra.spark`` logger at INFO."""
    logger.info("%s: %d/%d", description, done, total)


# -- schemas -------------------------------------------------------------------------------


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow schema (names, types, nullability)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Columns of ``batch`` selected by name, in ``schema``'s order, cast to its types."""
    columns = [batch.column(f.name).cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# -- read ----------------------------------------------------------------------------------


def _upcast(model: type[TableModel], batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Rows stored by an older schema version, brought up to the model (as ``TableView`` does)."""
    if not issubclass(model, Row):
        return _conform(batch, schema)
    if batch.schema.names == schema.names:
        oldest = pc.min(batch.column("schema_version")).as_py() if batch.num_rows else None
        if oldest is None or oldest >= model.SCHEMA_VERSION:
            return _conform(batch, schema)
    rows = [model.from_record(model.upcast(r)).to_record() for r in batch.to_pylist()]
    return pa.RecordBatch.from_pylist(rows, schema=schema)


@dataclass(frozen=True)
class TableSlice:
    """``rows`` rows of one Lance fragment from ``offset`` on; ``start`` is the position of its
    first row in the pinned version (the scan order ``TableView.take`` counts in)."""

    fragment_id: int
    start: int
    offset: int
    rows: int


def table_slices(view: TableView, min_slices: int = 1) -> list[TableSlice]:
    """The fragments of ``view`` in scan order, cut into equal row ranges when there are fewer
    fragments than ``min_slices`` (a table of one fragment would otherwise be one Spark task).

    Each fragment is cut into ``ceil(min_slices / fragments)`` ranges; rows are counted after
    deletions, as a fragment's scan returns them.
    """
    fragments = view.dataset.get_fragments()
    cuts = max(-(-min_slices // len(fragments)), 1) if fragments else 0
    slices: list[TableSlice] = []
    start = 0
    for fragment in fragments:
        total = fragment.count_rows()
        bounds = [total * k // cuts for k in range(cuts + 1)]
        slices += [
            TableSlice(fragment.fragment_id, start + lo, lo, hi - lo)
            for lo, hi in itertools.pairwise(bounds)
            if hi > lo
        ]
        start += total
    return slices


POSITION = "_position"
"""The column ``map_table(..., positions=True)`` adds: the row's position in the pinned
version, which ``TableView.take`` reads back."""

BatchMap = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
"""What ``map_table`` runs in each task: the task's rows, batch by batch, to output batches."""


def _slice_batches(
    dataset: lance.LanceDataset,
    piece: TableSlice,
    *,
    model: type[TableModel],
    columns: list[str] | None,
    projected: bool,
    positions: bool,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    schema = model.arrow_schema()
    if columns is not None:
        wanted = pa.schema([schema.field(c) for c in columns])
    fragment = dataset.get_fragment(piece.fragment_id)
    stored_batches = fragment.to_batches(
        columns=columns if projected else None,
        batch_size=batch_rows,
        offset=piece.offset,
        limit=piece.rows,
    )
    position = piece.start
    for stored in stored_batches:
        if not stored.num_rows:
            continue
        if projected:
            out = _conform(stored, wanted)
        else:
            out = _upcast(model, stored, schema)
            out = out if columns is None else _conform(out, wanted)
        if positions:
            numbers = pa.array(np.arange(position, position + out.num_rows, dtype=np.int64))
            out = out.append_column(pa.field(POSITION, pa.int64(), nullable=False), numbers)
        position += stored.num_rows
        yield out


def _map_slices(
    indices: Iterator[pa.RecordBatch],
    *,
    uri: str,
    version: int,
    storage_options: dict[str, str] | None,
    slices: list[TableSlice],
    model: type[TableModel],
    columns: list[str] | None,
    projected: bool,
    positions: bool,
    batch_rows: int,
    fn: BatchMap | None,
) -> Iterator[pa.RecordBatch]:
    dataset = None

    def rows() -> Iterator[pa.RecordBatch]:
        nonlocal dataset
        for batch in indices:
            for index in batch.column(0).to_pylist():
                if dataset is None:
                    dataset = lance.dataset(uri, version=version, storage_options=storage_options)
                yield from _slice_batches(
                    dataset,
                    slices[index],
                    model=model,
                    columns=columns,
                    projected=projected,
                    positions=positions,
                    batch_rows=batch_rows,
                )

    yield from (rows() if fn is None else fn(rows()))


# Bounded batches: one Arrow message per fragment can exceed the JVM's direct memory (a
# 116k-tool fragment was 800 MB).
READ_BATCH_ROWS = 2048


def map_table(
    spark: SparkSession,
    view: TableView,
    fn: BatchMap | None,
    schema: pa.Schema | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
    min_tasks: int = 1,
    positions: bool = False,
    batch_rows: int = READ_BATCH_ROWS,
) -> DataFrame:
    """A DataFrame of ``fn`` run over ``view``'s rows at its pinned version, in the tasks that
    read them: one Spark task per slice of a Lance fragment (``table_slices``).

    ``fn`` gets the task's rows as Arrow batches (``columns`` only, in that order, when given;
    every column otherwise), followed by a ``POSITION`` column with each row's position in
    the version when ``positions`` is set, and yields batches of ``schema``; ``fn=None``
    yields the rows themselves. Reading and mapping in one Python task spares a second trip
    through the JVM between them. Rows of older schema versions are upcast as
    ``TableView.to_arrow`` does (the whole row is read for that, then projected).
    ``storage_options`` are the lake's (``lake.store.options()``), needed on object stores.
    """
    from functools import partial

    picked = list(columns) if columns is not None else None
    if picked is not None:
        unknown = [c for c in picked if c not in view.schema.names]
        if unknown:
            raise ValueError(
                f"{view.table} has no column {unknown}; its columns are {view.schema.names}"
            )
    if schema is None:
        if fn is not None:
            raise ValueError("map_table needs the output schema of fn")
        full = view.schema
        schema = full if picked is None else pa.schema([full.field(c) for c in picked])
        if positions:
            schema = schema.append(pa.field(POSITION, pa.int64(), nullable=False))
    slices = table_slices(view, min_tasks)
    tasks = max(len(slices), 1)
    # spark.range splits evenly: exactly one slice index per partition.
    indices = spark.range(0, len(slices), 1, numPartitions=tasks)
    mapped = partial(
        _map_slices,
        uri=view.dataset.uri,
        version=view.version,
        storage_options=dict(storage_options) if storage_options else None,
        slices=slices,
        model=view.model,
        columns=picked,
        projected=picked is not None and not view.needs_upcast,
        positions=positions,
        batch_rows=batch_rows,
        fn=fn,
    )
    return indices.mapInArrow(mapped, spark_schema(schema))


def read_table(
    spark: SparkSession,
    view: TableView,
    storage_options: Mapping[str, str] | None = None,
    *,
    columns: Sequence[str] | None = None,
    min_tasks: int = 1,
) -> DataFrame:
    """A DataFrame of ``view``'s rows at its pinned version (``columns`` only, when given):
    one Spark task per Lance fragment, or per slice of one when there are fewer fragments
    than ``min_tasks``.

    ``storage_options`` are the lake's (``lake.store.options()``), needed on object stores.
    Rows of older schema versions are upcast as ``TableView.to_arrow`` does.
    """
    return map_table(
        spark, view, None, storage_options=storage_options, columns=columns, min_tasks=min_tasks
    )


# -- write ---------------------------------------------------------------------------------

_RESULT_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.int64(), nullable=False),
        pa.field("fragments", pa.string(), nullable=False),
        pa.field("rejects", pa.string(), nullable=False),
        pa.field("rows_in", pa.int64(), nullable=False),
        pa.field("rows_written", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class WriteSummary:
    """What ``write_table`` staged on the run: rows in, rows written, rejects by reason."""

    table: str
    rows_in: int
    rows: int
    rejected: int
    reject_reasons: dict[str, int]
    duplicates_skipped: int
    partitions: int
    fragments: int


def _write_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    table: str,
    uri: str,
    storage_options: dict[str, str] | None,
    run_id: str,
    source: str,
) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    model = DATA_TABLES[table]
    received = [b for b in batches if b.num_rows]
    fragments: list[FragmentMetadata] = []
    rejects: list[Reject] = []
    rows_in = rows_written = duplicates = 0
    if received:
        data = pa.Table.from_batches(received)
        rows_in = data.num_rows
        checked = prepare_rows(model, data, source, run_id)
        good = checked.good
        if good.num_rows:
            good = good.take(pc.sort_indices(good["id"]))
            fragments = write_fragments(
                good, uri, schema=model.arrow_schema(), storage_options=storage_options
            )
        rejects = checked.rejects
        rows_written = good.num_rows
        duplicates = checked.duplicates_skipped
    yield pa.RecordBatch.from_pylist(
        [
            {
                "partition": partition,
                "fragments": json.dumps([f.to_json() for f in fragments]),
                "rejects": json.dumps([r.model_dump(mode="json") for r in rejects]),
                "rows_in": rows_in,
                "rows_written": rows_written,
                "duplicates": duplicates,
            }
        ],
        schema=_RESULT_SCHEMA,
    )


def write_table(
    df: DataFrame,
    run: Run,
    table: str,
    source: str,
    *,
    partitions: int | None = None,
    progress: ProgressCallback | None = None,
    replace: bool = False,
) -> WriteSummary:
    """Validate and write ``df``'s rows as Lance fragments on the executors; stage them on ``run``.

    Rows are hash-partitioned by ``id`` (by every column when ``df`` has none) into
    ``partitions`` tasks (default: ``spark.sql.shuffle.partitions``), so duplicates of one row
    meet in one task and are written once, and each task writes its rows sorted by ``id``.
    Columns may come in any order: they are matched to the schema by name. Bad rows go to
    ``rejects`` with their reason. Nothing is visible until the run commits.
    """
    from functools import partial

    model = DATA_TABLES.get(table)
    if model is None:
        raise UnknownTableError(f"unknown table {table!r}; data tables are {sorted(DATA_TABLES)}")
    if run.reused:
        raise RunStateError(
            f"run {run.job} already finished as {run.result.run_id} with the same inputs; "
            "use its outputs instead of writing again"
        )
    unknown = [c for c in df.columns if c not in model.arrow_schema().names]
    if unknown:
        raise SchemaMismatchError(
            f"table {table!r} has no column(s) {unknown}; its columns are "
            f"{model.arrow_schema().names}. Rename or drop them before writing."
        )
    spark = df.sparkSession
    count = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    if count < 1:
        raise ValueError(f"partitions must be at least 1, got {count}")
    keys = ["id"] if "id" in df.columns else list(df.columns)
    task = partial(
        _write_partition,
        table=table,
        uri=run.lake.store.table_uri(table),
        storage_options=run.lake.store.options(),
        run_id=run.run_id,
        source=source,
    )
    written = df.repartition(count, *keys).mapInArrow(task, spark_schema(_RESULT_SCHEMA))
    with SparkProgress(spark, progress, f"write {table}"):
        results = sorted(written.collect(), key=lambda r: r["partition"])
    fragments: list[FragmentMetadata] = []
    rejects: list[Reject] = []
    for result in results:
        fragments.extend(
            FragmentMetadata.from_json(json.dumps(f)) for f in json.loads(result["fragments"])
        )
        rejects.extend(Reject.model_validate(r) for r in json.loads(result["rejects"]))
    run.append_fragments(table, fragments, replace=replace)
    run.stage_rejects(table, rejects)
    reasons: dict[str, int] = {}
    for reject in rejects:
        key = reject.reason.split(":", 1)[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = WriteSummary(
        table=table,
        rows_in=sum(r["rows_in"] for r in results),
        rows=sum(r["rows_written"] for r in results),
        rejected=len(rejects),
        reject_reasons=reasons,
        duplicates_skipped=sum(r["duplicates"] for r in results),
        partitions=len(results),
        fragments=len(fragments),
    )
    if progress is not None:
        progress(f"write {table}: rows written", summary.rows, summary.rows_in)
    return summary


__all__ = [
    "ProgressCallback",
    "SparkConfig",
    "SparkProgress",
    "SparkSessionFactory",
    "WriteSummary",
    "log_progress",
    "read_table",
    "spark_schema",
    "write_table",
]
