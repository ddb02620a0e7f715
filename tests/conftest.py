"""Shared fixtures: tmp_path lakes and small, real rows with known answers."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LANCE_LOG", "error")

from lake import Lake
from schemas import Tool, ToolServer
from schemas.tools import server_from_mcp, tool_from_mcp

SAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "samples"


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def sample_catalog() -> dict:
    return json.loads((SAMPLES / "tool_catalog.json").read_text())


@pytest.fixture(scope="session")
def sample_rows(sample_catalog: dict) -> tuple[list[ToolServer], list[Tool]]:
    servers, tools = [], []
    for entry in sample_catalog["servers"]:
        server = server_from_mcp("astra-sample", entry)
        servers.append(server)
        tools.extend(tool_from_mcp(server, raw) for raw in entry["tools"])
    return servers, tools


PIPELINE_SETTINGS = {
    "spark.master": "local[2]",
    "spark.shuffle_partitions": "2",
    "synthesis.chains_per_server": "3",
    "synthesis.queries_per_chain": "1",
    "synthesis.augmentations": "",
}


@pytest.fixture(scope="session")
def pipeline_lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with both pipelines run on the shipped catalog and snapshot ``pinned``: built
    once per session; tests get a copy (:func:`pipeline_lake`) so they may write to it."""
    from astra.pipeline import run_environment_pipeline, run_trajectory_pipeline
    from jobs.config import load_config
    from jobs.spark import SparkConfig, SparkSessionFactory

    config = load_config(None, PIPELINE_SETTINGS)
    factory = SparkSessionFactory(
        SparkConfig(master="local[2]", python=sys.executable, shuffle_partitions=2)
    )
    folder = tmp_path_factory.mktemp("pipeline") / "lake"
    built = Lake(folder)
    try:
        run_trajectory_pipeline(built, config, "builtin:sample", factory=factory)
        run_environment_pipeline(built, config, factory=factory)
    finally:
        factory.stop()
    built.create_snapshot("pinned", description="test pipeline")
    return folder


@pytest.fixture(scope="module")
def pipeline_lake(pipeline_lake_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A private copy of the session's pipeline lake."""
    target = tmp_path_factory.mktemp("pipeline-copy") / "lake"
    shutil.copytree(pipeline_lake_dir, target)
    return Lake(target)
