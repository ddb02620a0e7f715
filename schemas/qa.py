"""Decomposed QA traces: a main question, its answer and its sub-questions."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct


class SubQuestion(Struct):
    sid: str
    question: str
    answer: str
    hop: int
    depends_on: list[str] = []
    parallel: bool = False
    needs_tool: bool | None = None


class QATrace(Row):
    TABLE: ClassVar[str] = "qa_traces"
    ID_PREFIX: ClassVar[str] = "qa"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("question", "answer", "sub_questions")

    domain: str
    question: str
    answer: str
    scenario: Literal["single_hop", "parallel", "multi_hop", "parallel_multi_hop"]
    sub_questions: list[SubQuestion]
    source: str
