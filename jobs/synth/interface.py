"""The one interface every synthesis backend implements.

Three implementations stand behind it: an LLM behind any OpenAI-compatible server, vLLM's
offline engine on GPU machines (both through ``jobs.llm``), and the offline deterministic
synthesizer (``jobs.synth.offline``) that the demo and tests use. Stage jobs call only these
methods, so they never know which one runs.

Contract for every method: deterministic given its ``seed`` argument (for LLM backends, as
far as the server honours seeds); it never raises for a bad model reply: a judgment that
cannot be made comes back as a verdict/score with ``passed``/``score`` None and a status of
``failed`` or ``missing``, never as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from schemas import (
    Chain,
    Message,
    QATrace,
    Reward,
    Task,
    Tool,
    ToolEdge,
    ToolServer,
    Trajectory,
    Verdict,
)
from schemas.qa import QACheck, SubQuestion
from schemas.tasks import RubricScore

AugmentKind = Literal["diverse", "complicate", "persona"]


@dataclass(frozen=True)
class ToolOutcome:
    """What executing (or simulating) one tool call gave: the text the agent sees next."""

    ok: bool
    content: str
    error: str | None = None


class Synthesizer(Protocol):
    """A backend for every model-shaped step of trajectory synthesis."""

    @property
    def name(self) -> str:
        """Backend and model, recorded on every row it produced (e.g. ``offline@1``)."""
        ...

    def judge_edges(
        self, server: ToolServer, tools: list[Tool], candidates: list[ToolEdge], seed: int
    ) -> list[ToolEdge]:
        """Candidate edges with this backend's evidence added (``kind="llm"``), plus any new
        edges it proposes; the offline backend returns the candidates unchanged."""
        ...

    def verify_chain(self, chain: Chain, tools: list[Tool], seed: int) -> list[Verdict]:
        """Verdicts from the vote and back-translation verifiers (``passed`` None if unsure)."""
        ...

    def generate_queries(
        self, server: ToolServer, chain: Chain, tools: list[Tool], n: int, seed: int
    ) -> list[str]:
        """Up to ``n`` user queries that need every tool of the chain, naming none of them."""
        ...

    def augment(self, task: Task, kind: AugmentKind, seed: int) -> Task | None:
        """A new task from ``task`` (new scenario, added constraints, or a persona rewrite)."""
        ...

    def score_task(
        self, task: Task, chain: Chain | None, tools: list[Tool], seed: int
    ) -> list[RubricScore]:
        """1-5 rubric scores: query quality, scenario realism, tool-use necessity."""
        ...

    def agent_step(self, messages: list[Message], tools: list[Tool], seed: int) -> Message:
        """The assistant's next message: tool calls, or a final answer without tool calls."""
        ...

    def simulate_tool(
        self, tool: Tool, arguments: str, history: list[Message], seed: int
    ) -> ToolOutcome:
        """A schema-conformant result for a call of ``tool``, consistent with ``history``."""
        ...

    def generate_traces(
        self, server: ToolServer, tools: list[Tool], n: int, hops: tuple[int, int], seed: int
    ) -> list[QATrace]:
        """Up to ``n`` decomposed QA traces in the server's domain, written by a model; the
        offline backend writes none (it derives traces from trajectories)."""
        ...

    def synthesize_tool(self, trace: QATrace, step: SubQuestion, seed: int) -> SubQuestion | None:
        """The step with a model-written tool (code, schema, call arguments), or None when
        none could be had; the offline backend builds tools from recorded calls instead."""
        ...

    def confirm_merge(self, tools: list[tuple[str, str, str]], seed: int) -> bool | None:
        """Whether tools (name, description, parameters JSON) of different servers share one
        intent; None when it cannot tell (then they are not merged)."""
        ...

    def judge_trace(self, trace: QATrace, seed: int) -> list[QACheck]:
        """Model checks of a decomposed QA trace (tool necessity and ASTRA's four scores);
        the offline backend makes none (the rule checks run for every backend)."""
        ...

    def judge_trajectory(
        self, trajectory: Trajectory, tools: list[Tool], seed: int
    ) -> list[Reward]:
        """Judged reward dimensions (model-judged ones; rule-based ones live in rewards.py)."""
        ...
