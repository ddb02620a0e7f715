"""The tool dependency graph of each server, from typed schema matching, built on Spark.

An edge A -> B means B consumes something A produces, so A must run first. It exists when an
output field of A fits a required parameter of B:

- **name** (gate): the field's name and the parameter's name have the same tokens
  (``flightId`` = ``flight_id``, score 1.0), or the field qualified by the object that holds it
  does (``id`` inside ``flights[]`` is ``flight_id``, score 0.9);
- **type** (gate): compatible JSON types (same type 1.0, ``integer`` into ``number`` 1.0,
  ``number`` into ``integer`` 0.5, either side untyped 0.5, anything else: no match);
- **description**: the overlap of their descriptions' content words (0 to 1).

A match scores ``0.5 * name + 0.25 * type + 0.25 * description`` (in [0, 1]); matches below
``min_score`` are dropped. The edge's weight is its best match's score and its evidence holds
every kept (field -> parameter) match. No self-edges. The matching is plain functions over
``Tool`` rows (testable without Spark); the job only distributes it, one group per server.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from jobs.base import JobContext
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
from schemas.graph import EdgeEvidence

NAME_WEIGHT = 0.5
TYPE_WEIGHT = 0.25
DESCRIPTION_WEIGHT = 0.25
QUALIFIED_NAME_SCORE = 0.9

_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "e.g",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "the",
        "this",
        "that",
        "to",
        "with",
        "was",
        "were",
        "which",
        "will",
    ]
)


@dataclass(frozen=True)
class OutputField:
    """One field of a tool's output schema: where it is, what it holds.

    ``path`` names it inside the output (``flights[].flight_id``); ``holder`` is the name of
    the object that holds it, singular (``flight``), or None at the top level.
    """

    path: str
    name: str
    holder: str | None
    json_type: str | None
    description: str


@dataclass(frozen=True)
class InputParam:
    name: str
    json_type: str | None
    description: str


@dataclass(frozen=True)
class FieldMatch:
    """An output field that fits a required parameter, with its score and why."""

    source_field: str
    target_param: str
    score: float
    detail: str


@dataclass(frozen=True)
class Edge:
    source: Tool
    target: Tool
    matches: tuple[FieldMatch, ...]

    @property
    def weight(self) -> float:
        return max(m.score for m in self.matches)

    def to_row(self) -> ToolEdge:
        return ToolEdge(
            server_id=self.source.server_id,
            source_tool_id=self.source.id,
            target_tool_id=self.target.id,
            weight=self.weight,
            evidence=[
                EdgeEvidence(
                    kind="schema_match",
                    source_field=m.source_field,
                    target_param=m.target_param,
                    score=m.score,
                    detail=m.detail,
                )
                for m in self.matches
            ],
            parent_ids=[self.source.id, self.target.id],
        )


def singular(word: str) -> str:
    """A crude English singular, enough for field and object names.

    >>> [singular(w) for w in ["flights", "ids", "categories", "address", "status", "data"]]
    ['flight', 'id', 'category', 'address', 'status', 'data']
    """
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ss", "us", "is")) or not word.endswith("s") or len(word) <= 2:
        return word
    return word[:-1]


def name_tokens(name: str) -> tuple[str, ...]:
    """The lower-case words of an identifier, singular.

    >>> name_tokens("flightIds"), name_tokens("passenger_id"), name_tokens("pm2_5")
    (('flight', 'id'), ('passenger', 'id'), ('pm2', '5'))
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return tuple(singular(w) for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w)


def description_tokens(text: str) -> frozenset[str]:
    """The content words of a description.

    >>> sorted(description_tokens("Identifier of a bookable flight offer"))
    ['bookable', 'flight', 'identifier', 'offer']
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(singular(w) for w in words if w not in _STOPWORDS and len(w) > 1)


def _json_types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [k for k in kind if k != "null"]
    return [kind] if isinstance(kind, str) else []


def _first_type(schema: dict[str, Any]) -> str | None:
    kinds = _json_types(schema)
    return kinds[0] if kinds else None


def flatten_output(schema: dict[str, Any] | None) -> list[OutputField]:
    """Every field of an output schema, nested objects and arrays of objects included.

    >>> out = {"type": "object", "properties": {
    ...     "flights": {"type": "array", "description": "Matches", "items": {
    ...         "type": "object", "properties": {"id": {"type": "string"}}}},
    ...     "count": {"type": "integer"}}}
    >>> [(f.path, f.holder, f.json_type) for f in flatten_output(out)]
    [('flights', None, 'array'), ('flights[].id', 'flight', 'string'), ('count', None, 'integer')]
    """
    fields: list[OutputField] = []

    def walk(node: Any, path: str, holder: str | None) -> None:
        if not isinstance(node, dict):
            return
        if _first_type(node) == "array" or "items" in node:
            walk(node.get("items"), f"{path}[]", holder)
            return
        properties = node.get("properties")
        if not isinstance(properties, dict):
            return
        for name, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            child = f"{path}.{name}" if path else name
            fields.append(
                OutputField(
                    path=child,
                    name=name,
                    holder=holder,
                    json_type=_first_type(sub),
                    description=str(sub.get("description") or ""),
                )
            )
            walk(sub, child, "_".join(name_tokens(name)) or None)

    walk(schema, "", None)
    return fields


def required_params(parameters: dict[str, Any]) -> list[InputParam]:
    """The required parameters of a tool's (OpenAI-shaped) parameter schema.

    >>> required_params({"type": "object", "required": ["a"],
    ...                  "properties": {"a": {"type": "number"}, "b": {"type": "string"}}})
    [InputParam(name='a', json_type='number', description='')]
    """
    properties = parameters.get("properties") or {}
    params = []
    for name in parameters.get("required") or []:
        spec = properties.get(name) or {}
        params.append(
            InputParam(
                name=name,
                json_type=_first_type(spec),
                description=str(spec.get("description") or ""),
            )
        )
    return params


def name_score(source: OutputField, param: InputParam) -> float:
    """1.0 when the names have the same tokens, 0.9 when the field qualified by the object
    that holds it does, else 0.

    >>> p = InputParam("flight_id", "string", "")
    >>> name_score(OutputField("flightId", "flightId", None, "string", ""), p)
    1.0
    >>> name_score(OutputField("flights[].id", "id", "flight", "string", ""), p)
    0.9
    >>> name_score(OutputField("transaction_id", "transaction_id", None, "string", ""), p)
    0.0
    """
    wanted = name_tokens(param.name)
    if not wanted:
        return 0.0
    if name_tokens(source.name) == wanted:
        return 1.0
    if source.holder is not None:
        qualified = tuple(source.holder.split("_")) + name_tokens(source.name)
        if qualified == wanted:
            return QUALIFIED_NAME_SCORE
    return 0.0


def type_score(produced: str | None, wanted: str | None) -> float:
    """How well a value of JSON type ``produced`` fits a parameter of type ``wanted``.

    >>> type_score("integer", "number"), type_score("number", "integer")
    (1.0, 0.5)
    >>> type_score("string", "integer")
    0.0
    >>> type_score(None, "string")
    0.5
    """
    if produced is None or wanted is None:
        return 0.5
    if produced == wanted or (produced, wanted) == ("integer", "number"):
        return 1.0
    if (produced, wanted) == ("number", "integer"):
        return 0.5
    return 0.0


def description_score(a: str, b: str) -> float:
    """The overlap coefficient of two descriptions' content words (0 when either is empty).

    >>> description_score("Identifier of a bookable flight offer", "Flight offer to book")
    0.6667
    """
    left, right = description_tokens(a), description_tokens(b)
    if not left or not right:
        return 0.0
    return round(len(left & right) / min(len(left), len(right)), 4)


def match(source: OutputField, param: InputParam) -> FieldMatch | None:
    """The match of an output field and a required parameter, or None when they do not fit.

    >>> m = match(OutputField("flights[].flight_id", "flight_id", "flight", "string",
    ...                       "Identifier of a bookable flight offer"),
    ...           InputParam("flight_id", "string", "Identifier of the flight offer"))
    >>> m.score, m.detail
    (1.0, 'name exact 1.0; type string->string 1.0; description overlap 1.0')
    """
    by_name = name_score(source, param)
    if by_name == 0.0:
        return None
    by_type = type_score(source.json_type, param.json_type)
    if by_type == 0.0:
        return None
    by_description = description_score(source.description, param.description)
    score = round(
        NAME_WEIGHT * by_name + TYPE_WEIGHT * by_type + DESCRIPTION_WEIGHT * by_description, 4
    )
    how = "exact" if by_name == 1.0 else "qualified"
    detail = (
        f"name {how} {by_name}; type {source.json_type}->{param.json_type} {by_type}; "
        f"description overlap {by_description}"
    )
    return FieldMatch(source.path, param.name, score, detail)


def edge_between(source: Tool, target: Tool, min_score: float) -> Edge | None:
    """The edge source -> target, when some output field of source fits a required parameter
    of target with at least ``min_score``; evidence ordered by parameter, then score."""
    if source.id == target.id:
        return None
    matches = []
    params = required_params(target.parameters)
    for out in flatten_output(source.output_schema):
        for param in params:
            found = match(out, param)
            if found is not None and found.score >= min_score:
                matches.append(found)
    if not matches:
        return None
    matches.sort(key=lambda m: (m.target_param, -m.score, m.source_field))
    return Edge(source=source, target=target, matches=tuple(matches))


def server_edges(tools: list[Tool], min_score: float) -> list[Edge]:
    """Every edge among the tools of one server, ordered by (source name, target name).

    The same edges as calling :func:`edge_between` on every ordered pair, found through an
    index: a field can only match a parameter with the same name tokens (or the field's
    tokens qualified by its holder), so each output field looks up its candidate parameters
    instead of being compared with every parameter of every tool. Cost grows with the
    number of fields and parameters, not with the square of the tool count.

    >>> server_edges([], 0.5)
    []
    """
    ordered = sorted(tools, key=lambda t: (t.name, t.id))
    wanted_by: dict[tuple[str, ...], list[tuple[int, InputParam]]] = {}
    for index, target in enumerate(ordered):
        for param in required_params(target.parameters):
            tokens = name_tokens(param.name)
            if tokens:
                wanted_by.setdefault(tokens, []).append((index, param))
    found: dict[tuple[int, int], list[FieldMatch]] = {}
    for source_index, source in enumerate(ordered):
        for out in flatten_output(source.output_schema):
            keys = {name_tokens(out.name)}
            if out.holder is not None:
                keys.add(tuple(out.holder.split("_")) + name_tokens(out.name))
            for key in keys:
                for target_index, param in wanted_by.get(key, ()):
                    if ordered[target_index].id == source.id:
                        continue
                    hit = match(out, param)
                    if hit is not None and hit.score >= min_score:
                        found.setdefault((source_index, target_index), []).append(hit)
    edges = []
    for source_index, target_index in sorted(found):
        matches = sorted(
            set(found[(source_index, target_index)]),
            key=lambda m: (m.target_param, -m.score, m.source_field),
        )
        edges.append(
            Edge(source=ordered[source_index], target=ordered[target_index], matches=tuple(matches))
        )
    return edges


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
    """Schema-matched edges, judged by the LLM when one is configured, capped in degree."""
    edges = [e.to_row() for e in server_edges(tools, params.min_score)]
    graph = ServerGraph(edges)
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


class BuildToolGraph(SparkStage):
    name: ClassVar[str] = "build-tool-graph"
    version: ClassVar[str] = "2"
    description: ClassVar[str] = (
        "tools -> tool_edges: per server, A -> B when an output field of A fits a required "
        "parameter of B (typed schema matching, on Spark); with an LLM backend, edges from "
        "ASTRA's chain-proposal prompt are added as evidence; degree-capped"
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
        self.finish(ctx, "tool_edges", StageResult(frame=edges, dropped=skipped, calls=calls))
