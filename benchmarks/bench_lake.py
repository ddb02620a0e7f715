"""Lake write and read throughput against raw Lance, side by side in one run.

- Append N trajectory-shaped rows through ``Lake.append`` (validation, staging, commit, log,
  content hash) vs ``lance.write_dataset`` of the same Arrow table. Target: >= 0.8x raw.
- Read the table at a snapshot into Arrow vs a raw Lance read of the same version.
  Target: <= 1.2x raw time.
Each measurement runs in its own process, so its peak memory (RSS above the process's
baseline after building the data) is its own. Run: ``python benchmarks/bench_lake.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa

from schemas import Trajectory

WORDS = np.array(
    [
        "find",
        "book",
        "flight",
        "hotel",
        "cheapest",
        "tomorrow",
        "paris",
        "rome",
        "account",
        "balance",
        "transfer",
        "order",
        "track",
        "weather",
        "forecast",
        "doctor",
        "appointment",
        "cancel",
        "refund",
        "invoice",
        "total",
        "price",
    ]
)


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _texts(rng: np.random.Generator, n: int, words: int) -> pa.Array:
    picks = WORDS[rng.integers(0, len(WORDS), size=(n, words))]
    return _flat(pa.array([" ".join(row) for row in picks], pa.string()))


def trajectory_rows(n: int, seed: int = 0) -> pa.Table:
    """N trajectories of 4 messages each (user, assistant call, tool result, answer),
    built column-wise so that building them does not dominate the benchmark."""
    rng = np.random.default_rng(seed)
    schema = Trajectory.arrow_schema()
    message_type = schema.field("messages").type.value_type
    call_type = message_type.field("tool_calls").type.value_type
    m = 4 * n
    roles = _flat(pa.array(np.tile(np.array(["user", "assistant", "tool", "assistant"]), n)))
    content = _texts(rng, m, 12)
    content = _flat(
        pa.array(
            [None if i % 4 == 1 else v for i, v in enumerate(content.to_pylist())], pa.string()
        )
    )
    call_ids = pa.array([f"c{i}" for i in range(n)])
    calls = pa.StructArray.from_arrays(
        [call_ids, pa.array(WORDS[rng.integers(0, len(WORDS), n)]), _texts(rng, n, 6)],
        fields=list(call_type),
    )
    call_offsets = np.zeros(m + 1, dtype=np.int32)
    call_offsets[1:] = np.cumsum(np.tile(np.array([0, 1, 0, 0]), n))
    tool_calls = pa.ListArray.from_arrays(pa.array(call_offsets), calls)
    tool_call_id = _flat(
        pa.array([f"c{i // 4}" if i % 4 == 2 else None for i in range(m)], pa.string())
    )
    name = pa.nulls(m, pa.string())
    messages = pa.StructArray.from_arrays(
        [roles, content, tool_calls, tool_call_id, name], fields=list(message_type)
    )
    messages = pa.ListArray.from_arrays(pa.array(np.arange(0, m + 1, 4, dtype=np.int32)), messages)
    ids = [f"traj-{i:024x}" for i in range(n)]
    columns = {
        "id": pa.array(ids),
        "run_id": pa.nulls(n, pa.string()),
        "parent_ids": pa.array([[f"task-{i:024x}"] for i in range(n)]),
        "schema_version": pa.array(np.ones(n, dtype=np.int64)),
        "task_id": pa.array([f"task-{i:024x}" for i in range(n)]),
        "tool_ids": pa.array([[f"tool-{i % 997:024x}"] for i in range(n)]),
        "messages": messages,
        "agent_model": pa.array(["tiny"] * n),
        "executor": pa.array(["offline_simulator"] * n),
        "seed": pa.array(np.arange(n, dtype=np.int64)),
        "n_turns": pa.array(np.full(n, 2, dtype=np.int64)),
        "n_tool_calls": pa.array(np.ones(n, dtype=np.int64)),
        "status": pa.array(["completed"] * n),
        "final_answer": _texts(rng, n, 8),
    }
    return pa.Table.from_pydict(columns, schema=schema)


class RssSampler:
    """Peak resident memory while a block runs, above the RSS when it started (Linux)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def above_start_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def measure(case: str, rows: int, workdir: Path) -> dict[str, float]:
    """One measurement in this process: build the rows, then time ``case``."""
    import lance

    from lake import Lake

    table = trajectory_rows(rows) if case.startswith("write") else None
    lake = Lake(workdir / "lake")
    with RssSampler() as memory:
        start = time.perf_counter()
        if case == "write_raw":
            lance.write_dataset(table, str(workdir / "raw.lance"))
        elif case == "write_lake":
            result = lake.append("trajectories", table)
            assert result.rows == rows, result
        elif case == "snapshot":
            lake.create_snapshot("bench")
        elif case == "read_raw":
            version = lake.snapshot("bench").version_of("trajectories")
            out = lance.dataset(lake.store.table_uri("trajectories"), version=version).to_table()
            assert out.num_rows == rows
        elif case == "read_lake":
            out = lake.read("trajectories", snapshot="bench").to_arrow()
            assert out.num_rows == rows
        else:
            raise SystemExit(f"unknown case {case}")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_above_baseline_mb": memory.above_start_mb}


def run_case(case: str, rows: int, workdir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--case", case, "--rows", str(rows), "--workdir", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.rows, args.workdir)))
        return

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="astra-bench-") as tmp:
        for case in ("write_raw", "write_lake"):
            best: dict[str, float] | None = None
            for repeat in range(args.repeats):
                workdir = Path(tmp) / f"{case}-{repeat}"
                workdir.mkdir()
                got = run_case(case, args.rows, workdir)
                if best is None or got["seconds"] < best["seconds"]:
                    best = got
            results[case] = best or {}
        shared = Path(tmp) / "write_lake-0"
        results["snapshot"] = run_case("snapshot", args.rows, shared)
        for case in ("read_raw", "read_lake"):
            runs = [run_case(case, args.rows, shared) for _ in range(args.repeats)]
            results[case] = min(runs, key=lambda r: r["seconds"])

    write_ratio = results["write_raw"]["seconds"] / results["write_lake"]["seconds"]
    read_ratio = results["read_lake"]["seconds"] / results["read_raw"]["seconds"]
    report = {
        "rows": args.rows,
        "results": results,
        "append_throughput_vs_raw": round(write_ratio, 3),
        "append_target": ">= 0.8",
        "snapshot_read_time_vs_raw": round(read_ratio, 3),
        "read_target": "<= 1.2",
    }
    print(f"{'case':<12}{'seconds':>10}{'peak MB':>10}")
    for case, r in results.items():
        print(f"{case:<12}{r['seconds']:>10.2f}{r['peak_rss_above_baseline_mb']:>10.0f}")
    print(f"append throughput, Lake / raw Lance: {write_ratio:.2f}x (target >= 0.8x)")
    print(f"snapshot read time, Lake / raw Lance: {read_ratio:.2f}x (target <= 1.2x)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
