"""Tool dependency graph edges: A -> B when B consumes something A produces."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct


class EdgeEvidence(Struct):
    """Why an edge exists: one signal's (output field -> parameter) match and its score.

    ``kind`` names the signal (see :mod:`jobs.graph_signals`); a match on an output inferred
    for a tool without an output schema says ``inferred output`` in ``detail``.
    """

    kind: Literal["schema_match", "affix", "semantic", "producer_named", "llm"]
    source_field: str | None = None
    target_param: str | None = None
    score: float
    detail: str = ""


class ToolEdge(Row):
    TABLE: ClassVar[str] = "tool_edges"
    ID_PREFIX: ClassVar[str] = "edge"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("server_id", "source_tool_id", "target_tool_id")

    server_id: str
    source_tool_id: str
    target_tool_id: str
    weight: float
    evidence: list[EdgeEvidence]
