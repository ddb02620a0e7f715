"""Code-executable RL environments and the tools they are made of."""

from __future__ import annotations

from typing import ClassVar

from schemas.base import Json, Row, Struct


class EnvTool(Row):
    TABLE: ClassVar[str] = "env_tools"
    ID_PREFIX: ClassVar[str] = "etool"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("name", "parameters", "code_digest")

    name: str
    description: str
    parameters: Json
    code: str
    code_digest: str
    verified: bool
    runtime_digest: str | None = None


class ExpectedAnswer(Struct):
    sub_question_id: str
    tool_name: str
    answer: str


class Environment(Row):
    TABLE: ClassVar[str] = "environments"
    ID_PREFIX: ClassVar[str] = "env"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("prompt", "tool_ids", "initial_state", "expected")

    qa_trace_id: str | None = None
    domain: str
    prompt: str
    user_background: str = ""
    tool_ids: list[str]
    distractor_tool_ids: list[str] = []
    initial_state: Json
    expected: list[ExpectedAnswer]
    stateful: bool = False
    runtime_digest: str | None = None
