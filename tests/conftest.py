"""Shared fixtures: tmp_path lakes and small, real rows with known answers."""

from __future__ import annotations

import json
import os
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
