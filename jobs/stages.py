"""Running per-server synthesis work on Spark.

Every synthesis stage works one tool server at a time: it needs the server's tools, its tool
graph and the stage's primary rows (chains, tasks or trajectories) together. ``per_server``
packs each input as ``(server_id, kind, payload JSON)`` rows, unions them, shuffles by server
and calls a plain Python function per server on the executors; that function sees rebuilt
schema models sorted by id (so the output does not depend on shuffle order) and returns output
models. Counters (dropped rows by reason) and LLM call records come back to the driver through
Spark accumulators.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import pyarrow as pa
from pyspark import AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.spark import spark_schema
from schemas import Row


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
