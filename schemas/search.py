"""The search index: one document per searchable source row, with its text and embedding.

``build-search-index`` writes ``search_docs`` from pinned versions of ``tools``, ``tasks`` and
``trajectories`` and builds a full-text index on ``text`` (and a vector index on
``embedding`` once the table is large enough) in the same commit, so a snapshot pins the
documents and their indexes together. Each document points back to its source row
(``source_id``, also its only parent); the run that wrote the table records the versions of
the sources it read (its ``RunStarted`` inputs), so the rows themselves carry no version and
a replay in a scratch lake reproduces their content hash.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from schemas.base import Row, VectorColumn

EMBEDDING_DIMS = 384
"""all-MiniLM-L6-v2, the embedder the project ships offline."""

SearchSource = Literal["tools", "tasks", "trajectories"]
SEARCH_SOURCES: tuple[SearchSource, ...] = ("tools", "tasks", "trajectories")

Embedding = Annotated[
    list[float],
    VectorColumn(EMBEDDING_DIMS),
    Field(min_length=EMBEDDING_DIMS, max_length=EMBEDDING_DIMS),
]
"""An L2-normalised sentence embedding (a dot product is the cosine similarity)."""


class SearchDoc(Row):
    TABLE: ClassVar[str] = "search_docs"
    ID_PREFIX: ClassVar[str] = "sdoc"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("source_table", "source_id", "text", "embedder")

    source_table: SearchSource
    source_id: str
    text: str
    embedding: Embedding
    embedder: str
