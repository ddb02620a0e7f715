"""Measurements shared by ``astra sandbox bench`` and ``benchmarks/bench_sandbox.py``.

>>> summarize([0.002, 0.001, 0.003, 0.004])["p50_ms"]
2.5
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.core import Sandbox
from sandbox.pool import RunRequest, SandboxPool
from sandbox.session import Environment, run_session

#: A small, typical tool: a lookup with a little string and number work.
SMALL_TOOL = """
FORECASTS = {
    "paris": {"temp_c": 18.5, "sky": "cloudy"},
    "tokyo": {"temp_c": 24.0, "sky": "sunny"},
    "lima": {"temp_c": 16.0, "sky": "fog"},
}

def get_weather(city: str, unit: str = "c") -> dict:
    entry = FORECASTS.get(city.strip().lower())
    if entry is None:
        return {"error": f"unknown city {city!r}"}
    temp = entry["temp_c"] if unit == "c" else entry["temp_c"] * 9 / 5 + 32
    return {"city": city.title(), "temp": round(temp, 1), "unit": unit, "sky": entry["sky"]}
"""
SMALL_CALL = "get_weather(city='Paris', unit='f')"

#: A stateful environment: flights with seats, bookings that change later lookups.
BOOKING_TOOL = """
def search(origin: str, dest: str) -> list:
    return [f for f in STATE["flights"]
            if f["from"] == origin and f["to"] == dest and f["seats"] > 0]

def book(flight_id: str, passenger: str) -> dict:
    for flight in STATE["flights"]:
        if flight["id"] == flight_id:
            if flight["seats"] <= 0:
                raise ValueError(f"flight {flight_id} is full")
            flight["seats"] -= 1
            booking = {"id": f"B{len(STATE['bookings']) + 1}", "flight": flight_id,
                       "passenger": passenger}
            STATE["bookings"].append(booking)
            return booking
    raise KeyError(flight_id)

def bookings(passenger: str) -> list:
    return [b for b in STATE["bookings"] if b["passenger"] == passenger]
"""
BOOKING_STATE: dict[str, Any] = {
    "flights": [
        {"id": "AF1", "from": "CDG", "to": "JFK", "seats": 12},
        {"id": "AF2", "from": "CDG", "to": "JFK", "seats": 3},
        {"id": "JL7", "from": "HND", "to": "CDG", "seats": 9},
    ],
    "bookings": [],
}


def booking_calls(count: int = 20) -> list[str]:
    """A session of ``count`` calls: searches, bookings and booking lookups."""
    pattern = [
        "search(origin='CDG', dest='JFK')",
        "book(flight_id='AF2', passenger='ada')",
        "bookings(passenger='ada')",
        "book(flight_id='JL7', passenger='lin')",
    ]
    return [pattern[i % len(pattern)] for i in range(count)]


def summarize(latencies: list[float]) -> dict[str, float]:
    """p50/p95 in milliseconds and calls per second of a list of per-call seconds."""
    ordered = sorted(latencies)
    p95_index = min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))
    total = sum(ordered)
    return {
        "calls": float(len(ordered)),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[p95_index] * 1000, 3),
        "calls_per_s": round(len(ordered) / total, 1) if total > 0 else 0.0,
    }


def _timed(fn: Callable[[], object], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - start)
    return latencies


def bench_sandbox_calls(sandbox: Sandbox, count: int) -> dict[str, float]:
    """Warm per-call latency of the small tool in one process."""
    sandbox.run(SMALL_TOOL, SMALL_CALL)
    return summarize(_timed(lambda: sandbox.run(SMALL_TOOL, SMALL_CALL), count))


def bench_native_exec(count: int) -> dict[str, float]:
    """The same tool run by in-process ``exec`` (no isolation at all): the speed ceiling."""

    def once() -> object:
        namespace: dict[str, Any] = {}
        exec(compile(SMALL_TOOL, "<tool>", "exec"), namespace)
        return eval(SMALL_CALL, namespace)

    once()
    return summarize(_timed(once, count))


def bench_subprocess(count: int) -> dict[str, float]:
    """A fresh ``python3`` process per call running the same code (an HTTP sandbox's cost)."""
    script = SMALL_TOOL + f"\nimport json\nprint(json.dumps({SMALL_CALL}))\n"
    python = shutil.which("python3") or sys.executable

    def once() -> object:
        return subprocess.run(
            [python, "-I", "-c", script], capture_output=True, check=True, timeout=60
        )

    return summarize(_timed(once, count))


def bench_sessions_single(sandbox: Sandbox, sessions: int, calls: int = 20) -> dict[str, float]:
    """Per-call latency within stateful sessions of ``calls`` calls, one process."""
    environment = Environment(BOOKING_TOOL, BOOKING_STATE, name="booking")
    plan = booking_calls(calls)
    latencies: list[float] = []
    for seed in range(sessions):
        start = time.perf_counter()
        run_session(sandbox, environment, plan, seed)
        latencies.extend([(time.perf_counter() - start) / calls] * calls)
    return summarize(latencies)


def bench_pool(
    workers: int, count: int, cache_dir: Path | str | None, sessions: int = 0
) -> dict[str, float]:
    """Throughput of ``workers`` processes (started and warmed before timing).

    ``p50_ms``/``p95_ms`` are the in-worker wasm call times (without IPC).
    """
    with SandboxPool(workers, cache_dir) as pool:
        requests = [RunRequest(SMALL_TOOL, SMALL_CALL, seed=i) for i in range(count)]
        pool.run_many(requests[: workers * 8])
        start = time.perf_counter()
        results = pool.run_many(requests)
        elapsed = time.perf_counter() - start
        in_worker = summarize([r.duration_s for r in results])
        result = {
            "workers": float(workers),
            "calls_per_s": round(count / elapsed, 1),
            "p50_ms": in_worker["p50_ms"],
            "p95_ms": in_worker["p95_ms"],
        }
        if sessions:
            environment = Environment(BOOKING_TOOL, BOOKING_STATE, name="booking")
            plans = [booking_calls(20)] * sessions
            start = time.perf_counter()
            pool.run_sessions(environment, plans, list(range(sessions)))
            elapsed = time.perf_counter() - start
            result["session_calls_per_s"] = round(sessions * 20 / elapsed, 1)
        return result


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def machine_scaling_control(tasks: int = 8, iterations: int = 2_000_000) -> float:
    """Speed-up of 2 processes over 1 on a pure-Python loop: what this machine allows.

    Pool scaling of the sandbox should be read against this number (on a shared or
    oversubscribed machine it is well below 2).
    """
    timings = []
    for workers in (1, 2):
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as executor:
            list(executor.map(_spin, [10] * workers * 2))
            start = time.perf_counter()
            list(executor.map(_spin, [iterations] * tasks))
            timings.append(time.perf_counter() - start)
    return round(timings[0] / timings[1], 2)


def cold_start(cache_dir: Path | str, compiled_cache: bool) -> float:
    """Seconds for a new process to load the sandbox and finish one call.

    With ``compiled_cache=False`` the compiled form is removed first (a copy of the cache is
    used), so the process must compile the ~20 MB component.
    """
    source = Path(cache_dir)
    with tempfile.TemporaryDirectory(prefix="astra-sandbox-cold-") as tmp:
        target = source
        if not compiled_cache:
            target = Path(tmp) / "cache"
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("compiled"))
        script = (
            "import sys, time\n"
            "start = time.perf_counter()\n"
            "from sandbox import Sandbox\n"
            f"sb = Sandbox({str(target)!r})\n"
            f"r = sb.run({SMALL_TOOL!r}, {SMALL_CALL!r})\n"
            "assert r.ok, r\n"
            "print(time.perf_counter() - start)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
            env=_child_env(),
        )
        return float(proc.stdout.strip().splitlines()[-1])


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
