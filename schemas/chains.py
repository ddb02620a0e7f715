"""Tool chains: ordered walks over a server's tool graph, with every verifier verdict kept."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas.base import Row, Struct


class Verdict(Struct):
    """One verifier's judgment. ``passed`` is None when the verifier could not judge."""

    verifier: Literal["satisfiability", "llm_vote", "back_translation"]
    passed: bool | None
    detail: str = ""
    judge_model: str | None = None


class Chain(Row):
    TABLE: ClassVar[str] = "chains"
    ID_PREFIX: ClassVar[str] = "chain"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("server_id", "tool_ids")

    server_id: str
    tool_ids: list[str]
    tool_names: list[str]
    length: int
    seed: int
    verdicts: list[Verdict]
