"""Chains: seeded, budgeted, weighted random walks over one server's tool graph.

ASTRA samples length-bounded weighted random walks; its public release instead enumerates
every simple path, which grows combinatorially. :func:`sample_chains` is ours:

- The graph is a ``networkx.DiGraph`` over the server's tools, one edge per ``ToolEdge`` row,
  weighted by the row's ``weight``.
- A walk starts at a tool with outgoing edges, picked with weight ``1 / (1 + uses)``, where
  ``uses`` counts how often the tool already appeared in a walk of this call; each next step
  is picked among the successors with weight ``edge weight / (1 + uses)``. Under-covered tools
  are therefore favoured.
- Producer insertion: when the picked tool has a required id parameter that no earlier step
  provides (a join, such as a booking needing both a flight and a passenger id), a producer
  of it (a predecessor whose edge evidence maps a field to that parameter, itself
  satisfiable at that point) is inserted just before it, if the length allows; otherwise the
  walk ends there. A chain is therefore a dependency order, not always a path of the graph
  (the release's LLM-proposed chains are not paths either).
- Each walk draws its target length uniformly from ``[min_len, max_len]`` and stops early at
  a dead end (or at a tool already on the walk when ``acyclic``).
- Walks are deduplicated by tool sequence (the ``Chain`` id is the hash of server and tool
  ids, so the same sequence is the same row).
- Each kept walk gets a ``satisfiability`` verdict (:func:`check_satisfiability`); a walk that
  fails it is dropped. Every dropped walk is counted by reason in :class:`ChainStats`.
- ``budget`` is the number of walk attempts, not seconds, so the output depends only on the
  inputs and the seed.

:func:`enumerate_paths` is the release's baseline (exhaustive simple paths up to a length),
stopped by a time or count budget, for the benchmark.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx

from schemas import Chain, EdgeEvidence, Tool, ToolEdge, ToolServer, Verdict

ID_PARAM = re.compile(r"(^id$|_ids?$|_uuid$)", re.IGNORECASE)
LEAF_TYPES = frozenset({"string", "number", "integer", "boolean"})

DropReason = Literal["dead_end", "duplicate", "unsatisfiable"]


def param_schemas(tool: Tool) -> dict[str, dict[str, Any]]:
    """The tool's parameters by name (their JSON schemas)."""
    return dict((tool.parameters or {}).get("properties") or {})


def required_params(tool: Tool) -> list[str]:
    """Names of the tool's required parameters, in schema order."""
    return list((tool.parameters or {}).get("required") or [])


def is_id_param(name: str, schema: Mapping[str, Any]) -> bool:
    """Whether a parameter names an object the user cannot know (it must come from a tool).

    >>> is_id_param("flight_id", {"type": "string"})
    True
    >>> is_id_param("origin", {"type": "string", "description": "IATA code"})
    False
    >>> is_id_param("ref", {"type": "string", "description": "Identifier of the order"})
    True
    """
    description = str(schema.get("description") or "").lower()
    return bool(ID_PARAM.search(name)) or description.startswith("identifier")


def is_task_fillable(name: str, schema: Mapping[str, Any]) -> bool:
    """Whether the user's task can supply this parameter: a typed leaf or enum, not an id.

    >>> is_task_fillable("departure_date", {"type": "string"})
    True
    >>> is_task_fillable("cabin", {"enum": ["economy", "business"]})
    True
    >>> is_task_fillable("booking_id", {"type": "string"})
    False
    >>> is_task_fillable("items", {"type": "array", "items": {"type": "string"}})
    False
    """
    if is_id_param(name, schema):
        return False
    if "enum" in schema:
        return True
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return any(k in LEAF_TYPES for k in kinds)


def field_evidence(edge: ToolEdge) -> list[EdgeEvidence]:
    """The evidence items of an edge that map an output field to a parameter."""
    return [e for e in edge.evidence if e.source_field and e.target_param]


def simulation_schemas(
    tools: Sequence[Tool], edges: Sequence[ToolEdge]
) -> dict[str, dict[str, Any]]:
    """Output schemas to simulate tools that declare none, from what their edges say they
    produce: each field an outgoing edge's evidence reads (``source_field``) becomes a
    property shaped like the parameter it feeds (the item of a list parameter when the field
    is singular, ``item_id`` feeding ``item_ids``). Tools with an output schema are left out.

    >>> def t(name, params, output=None):
    ...     return Tool(server_id="s", name=name, description="d", domain="x",
    ...                 source_format="openai", output_schema=output, parameters={
    ...                 "type": "object", "required": list(params), "properties": params})
    >>> find = t("find_user", {"email": {"type": "string"}})
    >>> cancel = t("cancel", {"user_id": {"type": "string"},
    ...                       "item_ids": {"type": "array", "items": {"type": "integer"}}})
    >>> edge = ToolEdge(server_id="s", source_tool_id=find.id, target_tool_id=cancel.id,
    ...     weight=0.9, evidence=[EdgeEvidence(kind="schema_match", source_field="user_id",
    ...     target_param="user_id", score=0.9), EdgeEvidence(kind="affix",
    ...     source_field="item_id", target_param="item_ids", score=0.8)])
    >>> simulation_schemas([find, cancel], [edge])[find.id]["properties"]
    {'item_id': {'type': 'integer'}, 'user_id': {'type': 'string'}}
    """
    by_id = {t.id: t for t in tools}
    properties: dict[str, dict[str, dict[str, Any]]] = {}
    for edge in sorted(edges, key=lambda e: e.id):
        source, target = by_id.get(edge.source_tool_id), by_id.get(edge.target_tool_id)
        if source is None or target is None or source.output_schema:
            continue
        wanted = param_schemas(target)
        for evidence in field_evidence(edge):
            assert evidence.source_field is not None and evidence.target_param is not None
            field_name = evidence.source_field
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
                continue  # only flat names are simulated; paths need a declared schema
            shape = dict(wanted.get(evidence.target_param) or {})
            items = shape.get("items")
            if shape.get("type") == "array" and field_name != evidence.target_param and items:
                shape = dict(items)
            properties.setdefault(source.id, {}).setdefault(field_name, shape)
    return {
        tool_id: {"type": "object", "properties": dict(sorted(fields.items()))}
        for tool_id, fields in properties.items()
    }


def build_graph(tools: Sequence[Tool], edges: Sequence[ToolEdge]) -> nx.DiGraph:
    """A DiGraph over tool ids (attribute ``tool``) with each edge's ``weight`` and ``edge``.

    Edges that name a tool not in ``tools`` are ignored; duplicate rows for one pair keep the
    larger weight.
    """
    graph: nx.DiGraph = nx.DiGraph()
    for tool in sorted(tools, key=lambda t: t.id):
        graph.add_node(tool.id, tool=tool)
    for edge in sorted(edges, key=lambda e: e.id):
        src, dst = edge.source_tool_id, edge.target_tool_id
        if src not in graph or dst not in graph or edge.weight <= 0:
            continue
        if graph.has_edge(src, dst) and graph[src][dst]["weight"] >= edge.weight:
            continue
        graph.add_edge(src, dst, weight=float(edge.weight), edge=edge)
    return graph


def param_sources(
    steps: Sequence[Tool], index: int, edges: Sequence[ToolEdge]
) -> dict[str, tuple[int, str]]:
    """For step ``index``: parameter -> (earlier step index, source field), by edge evidence.

    The latest earlier step that provides a parameter wins (the most recent output).
    """
    target = steps[index]
    by_pair: dict[tuple[str, str], list[EdgeEvidence]] = {}
    for edge in edges:
        if edge.target_tool_id == target.id:
            by_pair.setdefault((edge.source_tool_id, edge.target_tool_id), []).extend(
                field_evidence(edge)
            )
    sources: dict[str, tuple[int, str]] = {}
    for j in range(index):
        for evidence in by_pair.get((steps[j].id, target.id), []):
            assert evidence.target_param is not None and evidence.source_field is not None
            sources[evidence.target_param] = (j, evidence.source_field)
    return sources


def check_satisfiability(steps: Sequence[Tool], edges: Sequence[ToolEdge]) -> Verdict:
    """Every required parameter of every step is fillable from an earlier output or the task.

    A parameter is fillable from an earlier output when an edge from an earlier step of the
    chain to this step carries evidence mapping a field to it; from the task when it is a
    typed leaf that is not an id (:func:`is_task_fillable`). The detail names each unfillable
    ``tool.param``.
    """
    missing: list[str] = []
    for i, tool in enumerate(steps):
        sources = param_sources(steps, i, edges)
        schemas = param_schemas(tool)
        for name in required_params(tool):
            if name in sources or is_task_fillable(name, schemas.get(name, {})):
                continue
            missing.append(f"{tool.name}.{name}")
    if missing:
        return Verdict(
            verifier="satisfiability",
            passed=False,
            detail="no producer for " + ", ".join(missing),
        )
    return Verdict(verifier="satisfiability", passed=True, detail="every required param fillable")


@dataclass
class ChainStats:
    """What one sampling call did: attempts, kept chains, drops by reason, tool coverage."""

    attempts: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    tool_uses: Counter[str] = field(default_factory=Counter)
    producers_inserted: int = 0

    def coverage(self, n_tools: int) -> float:
        """Share of the server's ``n_tools`` tools that appear in at least one kept chain."""
        return len(self.tool_uses) / n_tools if n_tools else 0.0


@dataclass
class ChainSample:
    chains: list[Chain]
    stats: ChainStats


def _unfilled(steps: Sequence[Tool], edges: Sequence[ToolEdge]) -> list[str]:
    """Required parameters of the last step that neither the task nor an earlier step fills."""
    tool = steps[-1]
    sources = param_sources(steps, len(steps) - 1, edges)
    schemas = param_schemas(tool)
    return [
        p
        for p in required_params(tool)
        if p not in sources and not is_task_fillable(p, schemas.get(p, {}))
    ]


def _producers(
    graph: nx.DiGraph,
    by_id: Mapping[str, Tool],
    edges: Sequence[ToolEdge],
    walk: Sequence[str],
    nxt: str,
    uses: Counter[str],
    rng: random.Random,
    acyclic: bool,
) -> list[str] | None:
    """Tools to insert before ``nxt`` so that each of its unfilled id parameters has a producer.

    A producer is a predecessor of ``nxt`` whose edge evidence maps a field to the parameter
    and whose own required parameters are fillable at that point. None when some parameter has
    no such producer (the walk stops before ``nxt``); ``[]`` when nothing is missing.
    """
    inserted: list[str] = []
    for param in _unfilled([*(by_id[t] for t in walk), by_id[nxt]], edges):
        prefix = [*walk, *inserted]
        if param not in _unfilled([*(by_id[t] for t in prefix), by_id[nxt]], edges):
            continue
        candidates = []
        for pred in sorted(graph.predecessors(nxt)):
            if pred == nxt or (acyclic and pred in prefix):
                continue
            evidence = field_evidence(graph[pred][nxt]["edge"])
            if not any(e.target_param == param for e in evidence):
                continue
            if _unfilled([*(by_id[t] for t in prefix), by_id[pred]], edges):
                continue
            candidates.append(pred)
        if not candidates:
            return None
        inserted.append(_pick(rng, candidates, [1.0 / (1 + uses[c]) for c in candidates]))
    return inserted


def _pick(rng: random.Random, items: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(list(items), weights=list(weights), k=1)[0]


def sample_chains(
    server: ToolServer,
    tools: Sequence[Tool],
    edges: Sequence[ToolEdge],
    *,
    n: int,
    min_len: int = 2,
    max_len: int = 5,
    acyclic: bool = True,
    seed: int,
    budget: int | None = None,
    run_id: str | None = None,
) -> ChainSample:
    """Up to ``n`` distinct, satisfiable chains of ``min_len``..``max_len`` tools.

    ``budget`` caps walk attempts (default ``20 * n``). Deterministic given the inputs and
    ``seed`` (tools and edges are ordered by id first, so input order does not matter).
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}..{max_len}")
    attempts_left = 20 * n if budget is None else budget
    graph = build_graph([t for t in tools if t.server_id == server.id], edges)
    by_id: dict[str, Tool] = {node: graph.nodes[node]["tool"] for node in graph.nodes}
    starts = sorted(node for node in graph.nodes if graph.out_degree(node) > 0)
    rng = random.Random(seed)
    stats = ChainStats()
    walk_uses: Counter[str] = Counter()
    seen: set[str] = set()
    chains: list[Chain] = []
    while len(chains) < n and stats.attempts < attempts_left and starts:
        stats.attempts += 1
        target_len = rng.randint(min_len, max_len)
        start = _pick(rng, starts, [1.0 / (1 + walk_uses[s]) for s in starts])
        producers = _producers(graph, by_id, edges, [], start, walk_uses, rng, acyclic)
        walk = [*(producers or []), start]
        while len(walk) < target_len:
            succ = sorted(graph.successors(walk[-1]))
            if acyclic:
                succ = [s for s in succ if s not in walk]
            if not succ:
                break
            weights = [graph[walk[-1]][s]["weight"] / (1 + walk_uses[s]) for s in succ]
            nxt = _pick(rng, succ, weights)
            producers = _producers(graph, by_id, edges, walk, nxt, walk_uses, rng, acyclic)
            if producers is None or len(walk) + len(producers) + 1 > max_len:
                break
            stats.producers_inserted += len(producers)
            walk.extend([*producers, nxt])
        if len(walk) < min_len:
            stats.dropped["dead_end"] += 1
            continue
        walk_uses.update(walk)
        steps = [by_id[t] for t in walk]
        chain_id = Chain.compute_id({"server_id": server.id, "tool_ids": walk})
        if chain_id in seen:
            stats.dropped["duplicate"] += 1
            continue
        seen.add(chain_id)
        verdict = check_satisfiability(steps, edges)
        if not verdict.passed:
            stats.dropped["unsatisfiable"] += 1
            continue
        stats.kept += 1
        stats.tool_uses.update(walk)
        edge_ids = [
            graph[a][b]["edge"].id
            for i, b in enumerate(walk)
            for a in walk[:i]
            if graph.has_edge(a, b)
        ]
        chains.append(
            Chain(
                server_id=server.id,
                tool_ids=walk,
                tool_names=[t.name for t in steps],
                length=len(walk),
                seed=seed,
                verdicts=[verdict],
                run_id=run_id,
                parent_ids=edge_ids,
            )
        )
    return ChainSample(chains=chains, stats=stats)


@dataclass
class PathEnumeration:
    """Result of the exhaustive baseline: how many paths, how long, whether it finished."""

    count: int
    elapsed_s: float
    complete: bool
    paths: list[list[str]]


def _simple_paths(graph: nx.DiGraph, max_len: int) -> Iterator[list[str]]:
    for source in sorted(graph.nodes):
        stack: list[tuple[list[str], Iterator[str]]] = [
            ([source], iter(sorted(graph.successors(source))))
        ]
        while stack:
            path, successors = stack[-1]
            nxt = next(successors, None)
            if nxt is None:
                stack.pop()
                continue
            if nxt in path:
                continue
            new = [*path, nxt]
            yield new
            if len(new) < max_len:
                stack.append((new, iter(sorted(graph.successors(nxt)))))


def enumerate_paths(
    graph: nx.DiGraph,
    max_len: int,
    *,
    min_len: int = 2,
    budget_s: float | None = None,
    budget_count: int | None = None,
    keep_paths: bool = False,
) -> PathEnumeration:
    """ASTRA's release baseline: every simple path of ``min_len``..``max_len`` nodes, by DFS.

    Stops when ``budget_s`` seconds have passed or ``budget_count`` paths were found
    (``complete`` is then False). ``keep_paths`` keeps the paths (memory grows with them).

    >>> g = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c")])
    >>> r = enumerate_paths(g, 3, keep_paths=True)
    >>> r.count, r.complete, r.paths
    (4, True, [['a', 'b'], ['a', 'b', 'c'], ['a', 'c'], ['b', 'c']])
    """
    start = time.perf_counter()
    count = 0
    paths: list[list[str]] = []
    for i, path in enumerate(_simple_paths(graph, max_len)):
        if budget_s is not None and i % 256 == 0 and time.perf_counter() - start > budget_s:
            return PathEnumeration(count, time.perf_counter() - start, False, paths)
        if len(path) < min_len:
            continue
        count += 1
        if keep_paths:
            paths.append(path)
        if budget_count is not None and count >= budget_count:
            return PathEnumeration(count, time.perf_counter() - start, False, paths)
    return PathEnumeration(count, time.perf_counter() - start, True, paths)
