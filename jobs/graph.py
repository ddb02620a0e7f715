"""The tool dependency graph of each server, from several signals, built on Spark.

An edge A -> B means B consumes something A produces, so A must run first. The signals that
find such pairs (typed schema matching, role-affixed names, embedding similarity, parameter
descriptions that name their producer, outputs inferred for tools without an output schema,
optional parameters, identifier types, self-edges, and penalties for generic-name, echo and
reversed matches) are plain functions over ``Tool`` rows in :mod:`jobs.graph_signals`, each
stored on the edge as evidence with its score and switchable for an ablation
(``GraphParams.signals``). The edge's weight is its best evidence's score; edges below
``min_score`` are dropped and each tool keeps its ``max_degree`` strongest producers and
consumers. With an LLM backend, the chain-proposal judge adds ``llm`` evidence. The job only
distributes the work, one group per server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from jobs.base import JobContext
from jobs.graph_signals import (
    DEFAULT_SIGNALS,
    LEGACY_SIGNALS,
    SIGNALS,
    Edge,
    ServerMatcher,
    Signal,
    Signals,
)
from jobs.spark import spark_schema
from jobs.stages import (
    BackendParams,
    CounterParam,
    ListParam,
    SparkStage,
    StageResult,
    llm_for,
)
from jobs.synth.tasks import stable_seed
from schemas import Tool, ToolEdge, ToolServer


def server_edges(tools: list[Tool], min_score: float, signals: Signals | None = None) -> list[Edge]:
    """Every edge among the tools of one server, ordered by (source name, target name).

    Candidates are found through indexes (a field can only match a parameter that shares a
    tail of name words with it, or by embedding similarity on small servers), so cost grows
    with the number of fields and parameters, not with the square of the tool count.

    >>> server_edges([], 0.5)
    []
    """
    return ServerMatcher(tools, signals or Signals()).edges(min_score)


def strongest_edges(edges: Sequence[ToolEdge], max_degree: int) -> list[ToolEdge]:
    """The edges among the ``max_degree`` strongest out of their source or into their target.

    Generic names (``id``, ``name``) link a tool of a large API to hundreds of others; a walk
    gains nothing from its 300th successor, and chain sampling pays for every edge. Keeping
    an edge when either end ranks it in its top ``max_degree`` bounds the graph at
    ``2 * max_degree`` edges per tool while every tool keeps its best producers and its best
    consumers. Ties break by the other end's id, so the result is deterministic; ``0`` keeps
    every edge.

    >>> def e(a, b, w):
    ...     return ToolEdge(
    ...         server_id="s", source_tool_id=a, target_tool_id=b, weight=w, evidence=[]
    ...     )
    >>> edges = [e("a", "b", 0.9), e("a", "c", 0.8), e("y", "c", 0.85)]
    >>> [(x.source_tool_id, x.target_tool_id) for x in strongest_edges(edges, 1)]
    [('a', 'b'), ('y', 'c')]
    >>> len(strongest_edges(edges, 2)), len(strongest_edges(edges, 0))
    (3, 3)
    """
    if max_degree <= 0:
        return list(edges)
    outgoing: dict[str, list[ToolEdge]] = {}
    incoming: dict[str, list[ToolEdge]] = {}
    for edge in edges:
        outgoing.setdefault(edge.source_tool_id, []).append(edge)
        incoming.setdefault(edge.target_tool_id, []).append(edge)
    kept: set[tuple[str, str]] = set()
    for group in outgoing.values():
        group.sort(key=lambda x: (-x.weight, x.target_tool_id))
        kept.update((x.source_tool_id, x.target_tool_id) for x in group[:max_degree])
    for group in incoming.values():
        group.sort(key=lambda x: (-x.weight, x.source_tool_id))
        kept.update((x.source_tool_id, x.target_tool_id) for x in group[:max_degree])
    return [x for x in edges if (x.source_tool_id, x.target_tool_id) in kept]


@dataclass(frozen=True)
class GraphParams(BackendParams):
    signals: tuple[Signal, ...] = field(
        default=DEFAULT_SIGNALS,
        metadata={
            "help": "the signals that find edges, from "
            + ", ".join(SIGNALS)
            + " (see jobs/graph_signals.py); the default is all but semantic (embeddings: "
            "slow on large APIs); 'schema' alone is the graph as first built"
        },
    )
    semantic_max_texts: int = field(
        default=400,
        metadata={
            "help": "compare output fields and parameters by embedding similarity only on "
            "servers with at most this many fields and parameters in all (every field is "
            "compared with every parameter)"
        },
    )
    min_score: float = field(
        default=0.6,
        metadata={
            "help": "keep a (field -> parameter) match scoring at least this, in [0, 1]; "
            "an exact name and type match with no shared description words scores 0.75"
        },
    )
    max_degree: int = field(
        default=16,
        metadata={
            "help": "keep an edge only if it is among the N strongest out of its source or "
            "into its target (0 keeps every edge)"
        },
    )
    llm_max_tools: int = field(
        default=60,
        metadata={
            "help": "with an LLM backend, judge the edges of servers with at most this many "
            "tools (the chain-proposal prompt lists every tool); larger servers keep the "
            "schema-matched graph and are counted as skipped"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must lie in [0, 1], got {self.min_score}")
        if self.max_degree < 0:
            raise ValueError(f"max_degree must be 0 (no cap) or more, got {self.max_degree}")
        unknown = sorted(set(self.signals) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown graph signals {unknown}; choose from {list(SIGNALS)}")
        if self.semantic_max_texts < 0:
            raise ValueError(
                f"semantic_max_texts must be 0 (no semantic matching) or more, "
                f"got {self.semantic_max_texts}"
            )
        if self.llm_max_tools < 2:
            raise ValueError(f"llm_max_tools must be at least 2, got {self.llm_max_tools}")


@dataclass
class ServerGraph:
    """One server's edges and what building them cost (skips, LLM calls)."""

    edges: list[ToolEdge]
    skipped: Counter[str] = field(default_factory=Counter)
    calls: list[Any] = field(default_factory=list)


def server_graph(
    tools: list[Tool],
    server: ToolServer | None,
    params: GraphParams,
    seed: int,
    api_key: str | None = None,
) -> ServerGraph:
    """Edges from every enabled signal, judged by the LLM when one is configured, capped in
    degree; counts tools that neither declare nor let us infer an output."""
    matcher = ServerMatcher(
        tools, Signals(frozenset(params.signals), semantic_max_texts=params.semantic_max_texts)
    )
    edges = [e.to_row() for e in matcher.edges(params.min_score)]
    graph = ServerGraph(edges)
    without_outputs = len(tools) - matcher.tools_with_outputs
    if without_outputs:
        graph.skipped["tools_without_outputs"] += without_outputs
    if params.backend != "offline":
        if server is None:
            graph.skipped["llm_judge_skipped_unknown_server"] += 1
        elif len(tools) > params.llm_max_tools:
            graph.skipped["llm_judge_skipped_large_server"] += 1
        else:
            synthesizer, log = llm_for(params, api_key)
            ordered = sorted(tools, key=lambda t: (t.name, t.id))
            graph.edges = synthesizer.judge_edges(
                server, ordered, edges, stable_seed(seed, server.id)
            )
            graph.calls = [call.model_dump(mode="json") for call in log.rows]
    graph.edges = strongest_edges(graph.edges, params.max_degree)
    return graph


def edges_by_server(
    params: GraphParams,
    servers: dict[str, ToolServer],
    seed: int,
    api_key: str | None,
    skipped: Any,
    calls: Any,
) -> Callable[[pa.Table], pa.Table]:
    """The function ``applyInArrow`` runs per server (typed, so Spark infers its form)."""

    def edges(tools: pa.Table) -> pa.Table:
        rows = [Tool.from_record(r) for r in tools.to_pylist()]
        server = servers.get(rows[0].server_id) if rows else None
        graph = server_graph(rows, server, params, seed, api_key)
        if graph.skipped:
            skipped.add(dict(graph.skipped))
        if graph.calls:
            calls.add(graph.calls)
        return ToolEdge.to_arrow(graph.edges)

    return edges


def empty_graph_reason(tools: int, skipped: dict[str, int]) -> str:
    """Why a graph over ``tools`` tools came out empty, in words a user can act on.

    >>> empty_graph_reason(429, {"tools_without_outputs": 429})[:70]
    '0 of 429 tools have an output schema or an inferable output; give the '
    >>> empty_graph_reason(3, {"tools_without_outputs": 1})[:60]
    'no output of any of the 3 tools (2 with a known or inferred '
    """
    without = skipped.get("tools_without_outputs", 0)
    if without >= tools:
        return (
            f"0 of {tools} tools have an output schema or an inferable output; give the "
            "catalog's tools output schemas, or descriptions that say what they return, "
            "or configure an LLM backend to judge edges"
        )
    return (
        f"no output of any of the {tools} tools ({tools - without} with a known or inferred "
        "output) fits a parameter of another tool of its server; lower "
        "synthesis.edge_min_score or check that the tools of a server share data"
    )


class BuildToolGraph(SparkStage):
    name: ClassVar[str] = "build-tool-graph"
    version: ClassVar[str] = "3"
    description: ClassVar[str] = (
        "tools -> tool_edges: per server, A -> B when something A produces fits a parameter "
        "of B (typed and role-affixed names, embedding similarity, parameter descriptions "
        "naming a producer, outputs inferred for schema-less tools; on Spark); with an LLM "
        "backend, edges from ASTRA's chain-proposal prompt are added as evidence; "
        "degree-capped"
    )
    inputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools")
    outputs: ClassVar[tuple[str, ...]] = ("tool_edges", "llm_calls")
    Params: ClassVar[type] = GraphParams

    def run(self, ctx: JobContext) -> None:
        spark = ctx.spark
        params: GraphParams = self.params
        servers = {s.id: s for s in self.servers(ctx)}
        skipped = spark.sparkContext.accumulator({}, CounterParam())
        calls = spark.sparkContext.accumulator([], ListParam())
        edges = (
            self.frame(ctx, "tools")
            .groupBy("server_id")
            .applyInArrow(
                edges_by_server(params, servers, ctx.seed, self.api_key, skipped, calls),
                spark_schema(ToolEdge.arrow_schema()),
            )
        )
        # The graph is derived from the whole tools table: each run replaces it.
        written = self.finish(
            ctx, "tool_edges", StageResult(frame=edges, dropped=skipped, calls=calls)
        )
        if not written:
            ctx.explain_empty(
                "tool_edges", empty_graph_reason(ctx.inputs["tools"].count_rows(), skipped.value)
            )


__all__ = [
    "DEFAULT_SIGNALS",
    "LEGACY_SIGNALS",
    "SIGNALS",
    "BuildToolGraph",
    "GraphParams",
    "server_edges",
    "server_graph",
    "strongest_edges",
]
