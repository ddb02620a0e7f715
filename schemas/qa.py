"""Decomposed QA traces: a main question, its answer and its sub-questions.

A trace is ASTRA's unit of environment synthesis: each sub-question that needs a tool gets a
synthesized tool whose call (``tool_name`` with ``arguments``) returns its ``answer``.
``checks`` holds every verdict the trace got (rule checks of its structure, LLM scores when a
backend judged it); ``selected`` says whether it passed them all, and ``selection`` why.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct

Scenario = Literal["single_hop", "parallel", "multi_hop", "parallel_multi_hop"]


class SubQuestion(Struct):
    """One step: ``depends_on`` names the sids whose answers it needs; ``hop`` is 1 for a
    step without dependencies and 1 + the deepest dependency's hop otherwise."""

    sid: str
    question: str
    answer: str
    hop: int
    depends_on: list[str] = []
    parallel: bool = False
    needs_tool: bool | None = None
    tool_name: str | None = None
    #: The call statement's keyword arguments, as canonical JSON.
    arguments: str | None = None
    #: The whole value the call returned when the trace was recorded, as canonical JSON.
    result: str | None = None
    #: A tool written for this step by an LLM (traces without recorded calls): its code,
    #: description and parameter schema (canonical JSON). Template tools leave these None.
    tool_code: str | None = None
    tool_description: str | None = None
    tool_parameters: str | None = None


class QACheck(Struct):
    """One check of a trace: a rule (``judge_model`` "rule") or an LLM score in [0, 1]."""

    dimension: str
    passed: bool | None
    score: float | None = None
    detail: str = ""
    judge_model: str = "rule"


class QATrace(Row):
    TABLE: ClassVar[str] = "qa_traces"
    ID_PREFIX: ClassVar[str] = "qa"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("question", "answer", "sub_questions")

    domain: str
    server_id: str | None = None
    question: str
    answer: str
    user_background: str = ""
    scenario: Scenario
    sub_questions: list[SubQuestion]
    source: str
    checks: list[QACheck] = []
    selected: bool = True
    selection: str = ""
