"""Compare checkpoints on the ``evals`` table: accuracy per checkpoint, settings and category."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas import Checkpoint, Eval


def settings_label(settings: Mapping[str, Any]) -> str:
    """A short, stable text of an evaluation's settings.

    >>> settings_label({"policy": "model", "max_new_tokens": 32, "decoding": "greedy"})
    'model decoding=greedy max_new_tokens=32'
    """
    rest = " ".join(f"{k}={v}" for k, v in sorted(settings.items()) if k != "policy")
    return f"{settings.get('policy', '?')} {rest}".strip()


def compare(
    rows: Sequence[Eval], checkpoints: Mapping[str, Checkpoint] | None = None
) -> list[dict[str, Any]]:
    """One line per (checkpoint, benchmark release, settings, category), plus an ``all`` line
    per checkpoint and settings when there are several categories: entries, passed, entries
    without a verdict and accuracy (passed over entries with a verdict). Checkpoints of the
    lake are labelled with their kind and step.

    >>> r = lambda ck, c, p: Eval(checkpoint=ck, benchmark="bfcl", benchmark_version="v",
    ...     category=c, entry_id=f"{c}_{p}", passed=p, score=float(p), details={})
    >>> [(x["checkpoint"], x["category"], x["accuracy"])
    ...  for x in compare([r("a", "base", True), r("a", "base", False), r("b", "base", True)])]
    [('a', 'base', 0.5), ('b', 'base', 1.0)]
    """
    known = checkpoints or {}
    groups: dict[tuple[str, str, str, str], list[Eval]] = {}
    for row in rows:
        key = (row.checkpoint, row.benchmark, row.benchmark_version, settings_label(row.settings))
        groups.setdefault(key, []).append(row)
    out = []
    for (checkpoint, benchmark, version, settings), members in sorted(groups.items()):
        found = known.get(checkpoint)
        by_category: dict[str, list[Eval]] = {}
        for member in members:
            by_category.setdefault(member.category, []).append(member)
        lines = sorted(by_category.items())
        if len(lines) > 1:
            lines.append(("all", members))
        for category, group in lines:
            judged = [m for m in group if m.passed is not None]
            passed = sum(1 for m in judged if m.passed)
            out.append(
                {
                    "checkpoint": checkpoint,
                    "model": f"{found.kind} step {found.step}" if found else "",
                    "snapshot": group[0].snapshot,
                    "benchmark": f"{benchmark} {version}",
                    "settings": settings,
                    "category": category,
                    "entries": len(group),
                    "passed": passed,
                    "no_verdict": len(group) - len(judged),
                    "accuracy": round(passed / len(judged), 3) if judged else None,
                }
            )
    return out
