"""Ingest a tool catalog in the MCP server-list format into ``tool_servers`` and ``tools``.

A catalog is ``{"catalog": NAME, "servers": [{"server_info": {...}, "tools": [...]}, ...]}``
(ASTRA's format). A server or tool that cannot be normalised to the OpenAI function format is
quarantined in ``rejects`` with its reason; the rest lands. Rows are content-addressed and
upserted, so ingesting the same catalog twice leaves the same rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jobs.base import Job, JobContext
from schemas import Tool, ToolServer
from schemas.tools import SchemaConversionError, server_from_mcp, tool_from_mcp

BUILTIN_PREFIX = "builtin:"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "schemas" / "samples"
BUILTIN_CATALOGS = {"sample": SAMPLES_DIR / "tool_catalog.json"}


class CatalogError(ValueError):
    """A catalog file that cannot be read at all (as opposed to single bad entries)."""


def resolve_source(source: str) -> Path:
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTIN_CATALOGS:
            raise CatalogError(
                f"no built-in catalog {name!r}; built-ins are {sorted(BUILTIN_CATALOGS)}"
            )
        return BUILTIN_CATALOGS[name]
    path = Path(source).expanduser()
    if not path.is_file():
        raise CatalogError(f"catalog file {source!r} does not exist; pass a path to a JSON file")
    return path


def load_catalog(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("servers"), list):
        raise CatalogError(
            f"{path} must be a JSON object with a 'servers' list of "
            "{'server_info': {...}, 'tools': [...]} entries"
        )
    return document


@dataclass(frozen=True)
class IngestParams:
    source: str = field(
        default="builtin:sample",
        metadata={"help": "catalog JSON file, or builtin:sample for the shipped demo catalog"},
    )
    catalog_name: str | None = field(
        default=None,
        metadata={"help": "name recorded as each server's source (default: the file's 'catalog')"},
    )


class IngestCatalog(Job):
    name: ClassVar[str] = "ingest-catalog"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "MCP server catalog -> tool_servers, tools (bad entries to rejects)"
    )
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools")
    Params: ClassVar[type] = IngestParams

    def fingerprint(self) -> str:
        data = resolve_source(self.params.source).read_bytes()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def run(self, ctx: JobContext) -> None:
        path = resolve_source(self.params.source)
        document = load_catalog(path)
        catalog = self.params.catalog_name or str(document.get("catalog") or path.stem)
        servers: list[ToolServer] = []
        tools: list[Tool] = []
        entries = document["servers"]
        for index, entry in enumerate(ctx.track(entries, len(entries), "servers")):
            where = f"{path.name}#servers[{index}]"
            try:
                server = server_from_mcp(catalog, entry, run_id=ctx.run.run_id)
            except SchemaConversionError as exc:
                ctx.quarantine("tool_servers", entry, f"unconvertible_server: {exc}", where)
                continue
            good_tools = []
            for tool_index, raw in enumerate(entry["tools"]):
                try:
                    good_tools.append(tool_from_mcp(server, raw, run_id=ctx.run.run_id))
                except SchemaConversionError as exc:
                    ctx.quarantine(
                        "tools", raw, f"unconvertible_tool: {exc}", f"{where}.tools[{tool_index}]"
                    )
            if len(good_tools) < 1:
                ctx.quarantine(
                    "tool_servers", entry, "no_valid_tools: every tool was rejected", where
                )
                continue
            servers.append(server.model_copy(update={"tool_count": len(good_tools)}))
            tools.extend(good_tools)
        ctx.upsert("tool_servers", ToolServer.to_arrow(servers), source=path.name)
        ctx.upsert("tools", Tool.to_arrow(tools), source=path.name)
