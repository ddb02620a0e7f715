"""Environments verified per second on 1 and 2 cores, and where the time goes.

One lake gets the shipped catalog's trajectory pipeline with many tasks per chain
(``--chains-per-server``, three queries per chain, every augmentation) and ``synthesize-qa``.
Then ``build-environments`` runs on a copy of that lake once per Spark master
(``local[1]``, ``local[2]``), each in a fresh SparkSession. Reported per master: traces,
environments, wall seconds, environments/s, and the job's own split: drafting the tools,
embedding for the merge, sandbox verification (wall, and summed sandbox seconds across
workers), writing (distractor embeddings included). The ratio of 2-core to 1-core
environments/s is the scaling of the verification stage.
Run: ``python benchmarks/bench_environments.py [--chains-per-server 12] [--out result.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astra.pipeline import environment_jobs, run_trajectory_pipeline
from jobs.config import AstraConfig, load_config
from jobs.runner import run_job
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake


def make_config(master: str, chains_per_server: int) -> AstraConfig:
    return load_config(
        None,
        {
            "spark.master": master,
            "spark.shuffle_partitions": "4",
            "synthesis.chains_per_server": str(chains_per_server),
            "synthesis.queries_per_chain": "3",
            "synthesis.failure_rate": "0.0",
        },
    )


def factory_for(master: str) -> SparkSessionFactory:
    return SparkSessionFactory(
        SparkConfig(master=master, python=sys.executable, shuffle_partitions=4)
    )


def prepare(folder: Path, chains_per_server: int) -> dict[str, Any]:
    """Trajectories and QA traces in ``folder``; returns row counts and seconds."""
    config = make_config("local[2]", chains_per_server)
    factory = factory_for("local[2]")
    lake = Lake(folder)
    start = time.perf_counter()
    try:
        run_trajectory_pipeline(lake, config, "builtin:sample", factory=factory)
        qa = run_job(lake, environment_jobs(config)[0], seed=config.seed, spark_factory=factory)
    finally:
        factory.stop()
    counts = {t.table: t.rows for t in lake.tables()}
    selected = lake.query("SELECT count(*) AS n FROM qa_traces WHERE selected")["n"][0]
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "trajectories": counts.get("trajectories", 0),
        "qa_traces": qa.kept.get("qa_traces", 0),
        "selected_traces": int(selected),
    }


def build(source: Path, workdir: Path, master: str, chains_per_server: int) -> dict[str, Any]:
    folder = workdir / f"lake-{master.removeprefix('local[').removesuffix(']')}"
    shutil.copytree(source, folder)
    config = make_config(master, chains_per_server)
    factory = factory_for(master)
    start = time.perf_counter()
    try:
        factory()
        spark_start = time.perf_counter() - start
        start = time.perf_counter()
        result = run_job(
            Lake(folder), environment_jobs(config)[1], seed=config.seed, spark_factory=factory
        )
        seconds = time.perf_counter() - start
    finally:
        factory.stop()
    split = dict(result.run.metrics.get("seconds", {}))
    environments = result.kept.get("environments", 0)
    row = {
        "master": master,
        "spark_start_s": round(spark_start, 2),
        "seconds": round(seconds, 2),
        "environments": environments,
        "rejected": sum(result.dropped.values()),
        "environments_per_s": round(environments / seconds, 2) if seconds else 0.0,
        **split,
    }
    print(
        f"{master:<9} {environments:>5} environments in {seconds:6.1f}s "
        f"({row['environments_per_s']}/s): " + ", ".join(f"{k} {v}" for k, v in split.items()),
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains-per-server", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-env-") as tmp:
        base = Path(tmp) / "base"
        prepared = prepare(base, args.chains_per_server)
        print(f"prepared: {prepared}", flush=True)
        runs = [build(base, Path(tmp), m, args.chains_per_server) for m in ("local[1]", "local[2]")]
    one, two = runs
    report = {
        "prepared": prepared,
        "runs": runs,
        "two_over_one_cores": round(two["environments_per_s"] / one["environments_per_s"], 3)
        if one["environments_per_s"]
        else None,
        "verify_two_over_one_cores": round(one["verify_wall_s"] / two["verify_wall_s"], 3)
        if two.get("verify_wall_s")
        else None,
    }
    print(json.dumps({k: report[k] for k in ("two_over_one_cores", "verify_two_over_one_cores")}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
