"""Code-executable RL environments and the tools they are made of.

An ``EnvTool`` is one verified Python tool: its schema, its code (mock data embedded, shared
state through the sandbox's ``STATE``), the digest of that code and of the sandbox runtime
that verified it, and the sub-questions it serves (``members``: ``qa_id#sid``). An
``Environment`` is one RL instance: a prompt with user background, the tools, distractor
tools from the global pool, the initial ``STATE``, and the answer each tool call must return.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Json, Row, Struct

DistractorBand = Literal["high", "medium", "low"]


class EnvTool(Row):
    TABLE: ClassVar[str] = "env_tools"
    ID_PREFIX: ClassVar[str] = "etool"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("name", "parameters", "code_digest")

    name: str
    description: str
    domain: str = ""
    server_id: str | None = None
    parameters: Json
    output_schema: Json | None = None
    code: str
    code_digest: str
    #: "lookup" (answers from its mock data), "writes_state" (creates records in STATE) or
    #: "reads_state" (finds only records an earlier call created).
    kind: Literal["lookup", "writes_state", "reads_state"] = "lookup"
    members: list[str] = []
    verified: bool
    runtime_digest: str | None = None


class ExpectedAnswer(Struct):
    sub_question_id: str
    tool_name: str
    answer: str
    #: The gold call's arguments (canonical JSON): replaying them must return ``answer``.
    arguments: str = "{}"


class Distractor(Struct):
    tool_id: str
    band: DistractorBand
    similarity: float


class Environment(Row):
    TABLE: ClassVar[str] = "environments"
    ID_PREFIX: ClassVar[str] = "env"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("prompt", "tool_ids", "initial_state", "expected")

    qa_trace_id: str | None = None
    domain: str
    prompt: str
    user_background: str = ""
    tool_ids: list[str]
    tool_names: list[str] = []
    distractor_tool_ids: list[str] = []
    distractors: list[Distractor] = []
    initial_state: Json
    expected: list[ExpectedAnswer]
    stateful: bool = False
    runtime_digest: str | None = None
