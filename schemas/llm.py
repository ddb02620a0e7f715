"""LLM calls: every request any backend made, with model, prompt version, tokens and latency."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from schemas.base import Row


class LLMCall(Row):
    TABLE: ClassVar[str] = "llm_calls"
    ID_PREFIX: ClassVar[str] = "llm"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("request_hash", "attempt", "started_at")

    backend: str
    model: str
    prompt_name: str
    prompt_version: str
    request_hash: str
    attempt: int
    started_at: datetime
    status: Literal["ok", "parse_error", "http_error", "timeout", "backend_error"]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float
    error: str | None = None
