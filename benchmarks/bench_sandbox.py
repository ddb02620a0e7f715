"""Benchmark the Wasmtime sandbox against its baselines, side by side, in one run.

Measures, for the same small tool call:

- native in-process ``exec`` (no isolation; the speed ceiling),
- a fresh ``python3`` subprocess per call (what an HTTP code sandbox pays per request),
- the sandbox in one process (per-call p50/p95 and calls/s), for a stateless call and per call
  within stateful sessions of 20 calls,
- a worker pool of 1 and 2 processes (calls/s, scaling), next to the scaling the machine
  itself allows (a pure-Python loop in 1 vs 2 processes),
- cold start of a new process with the compiled cache, and without it (compile only), and
  optionally from nothing (``--include-build``: build + compile).

Usage: ``python benchmarks/bench_sandbox.py [--calls 500] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sandbox import Sandbox, default_cache_dir
from sandbox.bench import (
    bench_native_exec,
    bench_pool,
    bench_sandbox_calls,
    bench_sessions_single,
    bench_subprocess,
    cold_start,
    machine_scaling_control,
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per sandbox measurement")
    parser.add_argument(
        "--subprocess-calls", type=int, default=30, help="calls for the subprocess baseline"
    )
    parser.add_argument("--sessions", type=int, default=20, help="20-call sessions to time")
    parser.add_argument("--cache-dir", type=Path, default=None, help="sandbox artifact cache")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument(
        "--include-build",
        action="store_true",
        help="also time a cold start from an empty cache (builds the component, ~15 s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    console = Console()
    with Sandbox(cache_dir) as sandbox:
        runtime = sandbox.runtime_digest
        console.print(f"runtime {runtime}", highlight=False)
        sandbox_calls = bench_sandbox_calls(sandbox, args.calls)
        sessions = bench_sessions_single(sandbox, args.sessions)
    native = bench_native_exec(args.calls)
    subprocess_baseline = bench_subprocess(args.subprocess_calls)
    pool_1 = bench_pool(1, args.calls * 2, cache_dir, sessions=args.sessions)
    pool_2 = bench_pool(2, args.calls * 2, cache_dir, sessions=args.sessions)
    control = machine_scaling_control()
    cold = {
        "new_process_with_compiled_cache_s": round(cold_start(cache_dir, True), 3),
        "new_process_compiling_s": round(cold_start(cache_dir, False), 3),
    }
    if args.include_build:
        with tempfile.TemporaryDirectory(prefix="astra-sandbox-empty-") as empty:
            cold["new_process_building_s"] = round(cold_start(Path(empty), True), 3)

    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "runtime_digest": runtime,
        "native_exec": native,
        "subprocess_per_call": subprocess_baseline,
        "sandbox_single": sandbox_calls,
        "sandbox_session_single": sessions,
        "pool_1_worker": pool_1,
        "pool_2_workers": pool_2,
        "cold_start": cold,
        "ratios": {
            "native_over_sandbox": round(native["calls_per_s"] / sandbox_calls["calls_per_s"], 1),
            "sandbox_over_subprocess": round(
                sandbox_calls["calls_per_s"] / subprocess_baseline["calls_per_s"], 1
            ),
            "pool_2_over_1": round(pool_2["calls_per_s"] / pool_1["calls_per_s"], 2),
            "pool_2_over_1_sessions": round(
                pool_2["session_calls_per_s"] / pool_1["session_calls_per_s"], 2
            ),
            "machine_pure_python_2_over_1": control,
        },
    }

    table = Table(title="sandbox vs baselines (small tool call)")
    for column in ("mode", "calls/s", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for name, row in (
        ("native exec, in-process (no isolation)", native),
        ("fresh python3 subprocess per call", subprocess_baseline),
        ("sandbox, 1 process", sandbox_calls),
        ("sandbox, per call in 20-call sessions", sessions),
    ):
        table.add_row(
            name, f"{row['calls_per_s']:.0f}", f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}"
        )
    for name, row in (("sandbox pool, 1 worker", pool_1), ("sandbox pool, 2 workers", pool_2)):
        table.add_row(
            name + " (p50/p95 in worker)",
            f"{row['calls_per_s']:.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
        )
        table.add_row(name + ", 20-call sessions", f"{row['session_calls_per_s']:.0f}", "", "")
    console.print(table)
    ratios = results["ratios"]
    console.print(
        f"native exec is {ratios['native_over_sandbox']}x the sandbox; the sandbox is "
        f"{ratios['sandbox_over_subprocess']}x a subprocess per call; 2 workers give "
        f"{ratios['pool_2_over_1']}x one worker ({ratios['pool_2_over_1_sessions']}x for "
        f"sessions); this machine gives {control}x on a pure-Python loop",
        highlight=False,
    )
    for name, seconds in cold.items():
        console.print(f"cold start, {name.replace('_', ' ')}: {seconds} s", highlight=False)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        console.print(f"wrote {args.out}", highlight=False)
    return results


if __name__ == "__main__":
    main()
