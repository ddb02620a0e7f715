"""The LLM-backed :class:`~jobs.synth.interface.Synthesizer`.

Every step renders one of the versioned prompts in ``jobs/prompts/``, asks through
:func:`~jobs.llm.structured.ask_structured` (bounded retries, every attempt logged) and fails
closed: a judgment that could not be had is a verdict with ``passed`` None, a rubric score or
reward with status ``failed`` and no score, an empty list, or ``None``; never a pass. Each call's
seed is derived from the caller's seed and what distinguishes the call, so a rerun sends the
same requests.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from jobs.envs.traces import scenario_of
from jobs.llm.client import CallLog, ChatBackend, ChatReply, message_to_openai
from jobs.llm.prompts import Prompt, load_prompt
from jobs.llm.structured import Structured, ask_structured, derive_seed, json_object
from jobs.synth.interface import AugmentKind, ToolOutcome
from schemas import (
    Chain,
    EdgeEvidence,
    JudgeStatus,
    Message,
    QATrace,
    Reward,
    Task,
    Tool,
    ToolCall,
    ToolEdge,
    ToolServer,
    Trajectory,
    Verdict,
    canonical_json,
)
from schemas.qa import QACheck, SubQuestion
from schemas.tasks import RubricScore

T = TypeVar("T")

RUBRIC_CRITERIA = ("query_quality", "scenario_realism", "tool_use_necessity")
QA_SCORES = ("dependency_consistency", "atomicity", "forced_serialization", "completeness")
"""ASTRA's four trace verification scores, averaged for the keep threshold."""
"""The 1-5 task rubric's criteria, as named in ``task_rubric.md`` and on ``RubricScore`` rows."""


def _schema_summary(schema: dict[str, Any] | None) -> str:
    if not schema:
        return "none"
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    if not properties:
        return str(schema.get("type", "value"))
    parts = []
    for name, sub in properties.items():
        kind = sub.get("type", "any") if isinstance(sub, dict) else "any"
        parts.append(f"{name} ({kind}{', required' if name in required else ''})")
    return ", ".join(parts)


def tool_line(tool: Tool) -> str:
    """One line describing a tool for a prompt: name, description, parameters, output."""
    line = f"- {tool.name}: {tool.description}; parameters: {_schema_summary(tool.parameters)}"
    if tool.output_schema:
        line += f"; returns: {_schema_summary(tool.output_schema)}"
    return line


def tool_list(tools: Sequence[Tool]) -> str:
    return "\n".join(tool_line(t) for t in tools) or "(no tools)"


def chain_steps(chain: Chain, tools: Sequence[Tool]) -> str:
    """The chain's tools in order, numbered, with what is known about each."""
    by_id = {t.id: t for t in tools}
    by_name = {t.name: t for t in tools}
    lines = []
    for index, (tool_id, name) in enumerate(zip(chain.tool_ids, chain.tool_names, strict=True)):
        tool = by_id.get(tool_id) or by_name.get(name)
        described = tool_line(tool)[2:] if tool else name
        lines.append(f"{index + 1}. {described}")
    return "\n".join(lines)


def render_transcript(messages: Sequence[Message]) -> str:
    """A numbered, plain-text conversation for judges; tool calls are numbered across it."""
    lines = []
    call_number = 0
    call_numbers: dict[str, int] = {}
    for index, message in enumerate(messages, start=1):
        if message.role == "tool":
            number = call_numbers.get(message.tool_call_id or "")
            label = f"call {number}" if number else "unmatched call"
            lines.append(f"[{index}] tool result for {label} ({message.name}): {message.content}")
            continue
        text = f"[{index}] {message.role}: {message.content or ''}".rstrip()
        for call in message.tool_calls:
            call_number += 1
            call_numbers[call.id] = call_number
            text += f"\n    call {call_number}: {call.name}({call.arguments})"
        lines.append(text)
    return "\n".join(lines)


def count_tool_calls(trajectory: Trajectory) -> int:
    return sum(len(m.tool_calls) for m in trajectory.messages if m.role == "assistant")


def count_assistant_turns(trajectory: Trajectory) -> int:
    return sum(1 for m in trajectory.messages if m.role == "assistant")


def count_observation_turns(trajectory: Trajectory) -> int:
    """Assistant turns that come right after tool results."""
    messages = trajectory.messages
    return sum(
        1 for prev, cur in pairwise(messages) if cur.role == "assistant" and prev.role == "tool"
    )


@dataclass(frozen=True)
class JudgeSpec:
    """One judged trajectory dimension: its prompt, allowed per-item scores, and how many items
    a trajectory has (0 means the dimension does not apply: the reward is ``missing``)."""

    dimension: str
    prompt: str
    allowed: frozenset[float]
    count: Callable[[Trajectory], int]


_BINARY = frozenset({0.0, 1.0})
_TERNARY = frozenset({0.0, 0.5, 1.0})

TRAJECTORY_JUDGES: tuple[JudgeSpec, ...] = (
    JudgeSpec("tool_call_conciseness", "judge_conciseness", _BINARY, count_tool_calls),
    JudgeSpec("final_answer", "judge_final_answer", _TERNARY, lambda t: 2),
    JudgeSpec("tool_call_success", "judge_tool_success", _BINARY, count_tool_calls),
    JudgeSpec("step_planning", "judge_planning", _TERNARY, count_assistant_turns),
    JudgeSpec("observation_understanding", "judge_observation", _TERNARY, count_observation_turns),
    JudgeSpec("query_understanding", "judge_query_understanding", _TERNARY, lambda t: 1),
    JudgeSpec("initial_plan", "judge_initial_plan", _TERNARY, lambda t: 1),
)
"""ASTRA's seven trajectory dimensions; each reward is the mean of its items, in [0, 1]."""


def parse_scores(reply: ChatReply, count: int, allowed: frozenset[float]) -> tuple[float, str]:
    """The mean of a judge's ``scores`` list (exactly ``count`` allowed values) and its rationale.

    >>> parse_scores(ChatReply('{"scores": [1, 0.5], "rationale": "ok"}'), 2, _TERNARY)
    (0.75, 'ok')
    """
    body = json_object(reply)
    scores = body["scores"]
    if not isinstance(scores, list) or len(scores) != count:
        raise ValueError(f"'scores' must be a list of exactly {count} numbers, got {scores!r}")
    values = []
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int | float) or score not in allowed:
            raise ValueError(f"score {score!r} is not one of {sorted(allowed)}")
        values.append(float(score))
    rationale = body.get("rationale")
    return sum(values) / count, rationale if isinstance(rationale, str) else ""


def _string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of strings")
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{key}' must be a non-empty string")
    return value.strip()


def _looks_like_identifier(name: str) -> bool:
    return bool(re.search(r"[_\-\d]|[a-z][A-Z]", name))


def names_a_tool(query: str, tools: Sequence[Tool]) -> bool:
    """Whether ``query`` spells out a tool's name. Only names that cannot be ordinary words
    (with ``_``, ``-``, digits or inner capitals) are checked: ``search`` is a word.

    >>> from schemas import Tool
    >>> t = Tool(server_id="s", name="get_weather", description="weather now", domain="d",
    ...          source_format="openai", parameters={"type": "object", "properties": {}})
    >>> names_a_tool("Use get_weather for Paris", [t]), names_a_tool("Weather in Paris?", [t])
    (True, False)
    """
    for tool in tools:
        if _looks_like_identifier(tool.name) and re.search(
            rf"(?<![A-Za-z0-9_]){re.escape(tool.name)}(?![A-Za-z0-9_])", query, re.IGNORECASE
        ):
            return True
    return False


class LLMSynthesizer:
    """Every model-shaped step of trajectory synthesis, through one chat backend.

    ``votes`` judgments are sampled per chain at ``vote_temperature``; other calls use
    ``temperature``. ``proposals`` is how many chains the chain-proposal prompt asks for.
    """

    def __init__(
        self,
        backend: ChatBackend,
        call_log: CallLog,
        votes: int = 3,
        *,
        retries: int = 2,
        temperature: float = 0.0,
        vote_temperature: float = 0.7,
        max_tokens: int | None = 1024,
        proposals: int = 5,
        simulator_history: int = 4,
    ) -> None:
        if votes < 1:
            raise ValueError(f"votes must be >= 1, got {votes}")
        self.backend = backend
        self.log = call_log
        self.votes = votes
        self.retries = retries
        self.temperature = temperature
        self.vote_temperature = vote_temperature
        self.max_tokens = max_tokens
        self.proposals = proposals
        self.simulator_history = simulator_history

    @property
    def name(self) -> str:
        return f"{self.backend.kind}@{self.backend.model}"

    def _ask(
        self,
        prompt_name: str,
        variables: dict[str, Any],
        parse: Callable[[ChatReply], T],
        seed: int,
        *,
        temperature: float | None = None,
        conversation: Sequence[dict[str, Any]] = (),
        tools: Sequence[dict[str, Any]] = (),
    ) -> Structured[T]:
        return ask_structured(
            self.backend,
            load_prompt(prompt_name),
            variables,
            parse,
            self.retries,
            log=self.log,
            seed=seed,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens,
            conversation=conversation,
            tools=tools,
        )

    # -- tool graph ---------------------------------------------------------------------------

    def judge_edges(
        self, server: ToolServer, tools: list[Tool], candidates: list[ToolEdge], seed: int
    ) -> list[ToolEdge]:
        """Adds ``llm`` evidence to candidate edges that proposed chains use, and new edges for
        pairs only the model proposed. Evidence score: the share of proposed chains holding the
        pair; a candidate's weight becomes the larger of its weight and that score."""
        by_name = {t.name: t for t in tools}

        def parse(reply: ChatReply) -> list[list[str]]:
            chains = json_object(reply)["chains"]
            if not isinstance(chains, list) or not all(
                isinstance(c, list) and all(isinstance(n, str) for n in c) for c in chains
            ):
                raise ValueError("'chains' must be a list of lists of tool names")
            return chains

        result = self._ask(
            "chain_proposal",
            {
                "server_title": server.title,
                "server_description": server.description,
                "domain": server.domain,
                "tool_list": tool_list(tools),
                "n_chains": self.proposals,
            },
            parse,
            derive_seed(seed, "chain_proposal", server.id),
        )
        if not result.ok or not result.value:
            return list(candidates)
        chains = [[n for n in chain if n in by_name] for chain in result.value]
        chains = [c for c in chains if len(c) >= 2]
        if not chains:
            return list(candidates)
        pairs: Counter[tuple[str, str]] = Counter()
        for chain in chains:
            pairs.update({(a, b) for a, b in pairwise(chain) if a != b})

        def evidence(a: str, b: str) -> EdgeEvidence:
            k = pairs[(a, b)]
            return EdgeEvidence(
                kind="llm",
                score=k / len(chains),
                detail=f"consecutive in {k} of {len(chains)} proposed chains "
                f"({self.name}, {result.prompt_key})",
            )

        name_of = {t.id: t.name for t in tools}
        out = []
        seen: set[tuple[str, str]] = set()
        for edge in candidates:
            key = (name_of.get(edge.source_tool_id, ""), name_of.get(edge.target_tool_id, ""))
            if key in pairs:
                seen.add(key)
                found = evidence(*key)
                edge = edge.model_copy(
                    update={
                        "evidence": [*edge.evidence, found],
                        "weight": max(edge.weight, found.score),
                    }
                )
            out.append(edge)
        for a, b in sorted(pairs.keys() - seen):
            found = evidence(a, b)
            source, target = by_name[a], by_name[b]
            out.append(
                ToolEdge(
                    server_id=server.id,
                    source_tool_id=source.id,
                    target_tool_id=target.id,
                    weight=found.score,
                    evidence=[found],
                    parent_ids=[source.id, target.id],
                )
            )
        return out

    # -- chain verification -------------------------------------------------------------------

    def verify_chain(self, chain: Chain, tools: list[Tool], seed: int) -> list[Verdict]:
        """An ``llm_vote`` verdict (strict majority of ``votes`` sampled judgments) and a
        ``back_translation`` verdict (chain -> query -> chain must give the chain back)."""
        return [self._vote(chain, tools, seed), self._back_translate(chain, tools, seed)]

    def _vote(self, chain: Chain, tools: list[Tool], seed: int) -> Verdict:
        def parse(reply: ChatReply) -> bool:
            value = json_object(reply)["realistic"]
            if not isinstance(value, bool):
                raise ValueError("'realistic' must be true or false")
            return value

        domain = tools[0].domain if tools else "general"
        yes = no = 0
        for index in range(self.votes):
            result = self._ask(
                "chain_vote",
                {"domain": domain, "chain": chain_steps(chain, tools)},
                parse,
                derive_seed(seed, "chain_vote", chain.id, index),
                temperature=self.vote_temperature,
            )
            if result.ok:
                yes += result.value is True
                no += result.value is False
        failed = self.votes - yes - no
        passed: bool | None
        if 2 * yes > self.votes:
            passed = True
        elif 2 * (yes + failed) <= self.votes:
            passed = False  # even the failed judgments could not have made a majority
        else:
            passed = None
        return Verdict(
            verifier="llm_vote",
            passed=passed,
            detail=f"yes={yes} no={no} failed={failed} of {self.votes}",
            judge_model=self.name,
        )

    def _back_translate(self, chain: Chain, tools: list[Tool], seed: int) -> Verdict:
        language = "the language of the tool descriptions"
        forward = self._ask(
            "back_translate_query",
            {"chain_tools": chain_steps(chain, tools), "language": language},
            lambda reply: _text(json_object(reply), "query"),
            derive_seed(seed, "back_translate_query", chain.id),
        )
        if not forward.ok or forward.value is None:
            return Verdict(
                verifier="back_translation",
                passed=None,
                detail=f"chain -> query failed: {forward.error}",
                judge_model=self.name,
            )
        backward = self._ask(
            "back_translate_chain",
            {"query": forward.value, "tool_list": tool_list(tools)},
            lambda reply: _string_list(json_object(reply), "tools"),
            derive_seed(seed, "back_translate_chain", chain.id),
        )
        if not backward.ok or backward.value is None:
            return Verdict(
                verifier="back_translation",
                passed=None,
                detail=f"query -> chain failed: {backward.error}; query: {forward.value}",
                judge_model=self.name,
            )
        passed = backward.value == list(chain.tool_names)
        return Verdict(
            verifier="back_translation",
            passed=passed,
            detail=canonical_json({"query": forward.value, "reconstructed": backward.value}),
            judge_model=self.name,
        )

    # -- tasks --------------------------------------------------------------------------------

    def generate_queries(
        self, server: ToolServer, chain: Chain, tools: list[Tool], n: int, seed: int
    ) -> list[str]:
        """Up to ``n`` distinct queries; any that spells out a tool name is dropped."""
        if n < 1:
            return []
        result = self._ask(
            "query_generation",
            {
                "server_title": server.title,
                "server_description": server.description,
                "domain": server.domain,
                "language": server.language,
                "chain_tools": chain_steps(chain, tools),
                "n": n,
            },
            lambda reply: _string_list(json_object(reply), "queries"),
            derive_seed(seed, "query_generation", chain.id, n),
        )
        if not result.ok or result.value is None:
            return []
        queries: list[str] = []
        for query in (q.strip() for q in result.value):
            if query and query not in queries and not names_a_tool(query, tools):
                queries.append(query)
        return queries[:n]

    def augment(self, task: Task, kind: AugmentKind, seed: int) -> Task | None:
        def parse(reply: ChatReply) -> tuple[str, str | None]:
            body = json_object(reply)
            persona = _text(body, "persona") if kind == "persona" else None
            return _text(body, "query"), persona

        result = self._ask(
            f"augment_{kind}",
            {"query": task.query, "language": task.language},
            parse,
            derive_seed(seed, "augment", kind, task.id),
        )
        if not result.ok or result.value is None:
            return None
        query, persona = result.value
        if query == task.query:
            return None
        return Task(
            server_id=task.server_id,
            chain_id=task.chain_id,
            query=query,
            augmentation=kind,
            persona=persona,
            language=task.language,
            parent_ids=[task.id],
        )

    def score_task(
        self, task: Task, chain: Chain | None, tools: list[Tool], seed: int
    ) -> list[RubricScore]:
        def parse(reply: ChatReply) -> dict[str, float]:
            body = json_object(reply)
            scores = {}
            for criterion in RUBRIC_CRITERIA:
                entry = body[criterion]
                value = entry.get("score") if isinstance(entry, dict) else entry
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{criterion}: score must be a number, got {value!r}")
                if value not in (1, 2, 3, 4, 5):
                    raise ValueError(f"{criterion}: score must be a whole number 1-5, got {value}")
                scores[criterion] = float(value)
            return scores

        shown = tools
        if chain is not None:
            in_chain = set(chain.tool_ids)
            shown = [t for t in tools if t.id in in_chain] or tools
        result = self._ask(
            "task_rubric",
            {"query": task.query, "tool_list": tool_list(shown)},
            parse,
            derive_seed(seed, "task_rubric", task.id),
        )
        if not result.ok or result.value is None:
            return [
                RubricScore(
                    criterion=c, score=None, status=JudgeStatus.FAILED, judge_model=self.name
                )
                for c in RUBRIC_CRITERIA
            ]
        return [
            RubricScore(
                criterion=c, score=result.value[c], status=JudgeStatus.OK, judge_model=self.name
            )
            for c in RUBRIC_CRITERIA
        ]

    # -- trajectories -------------------------------------------------------------------------

    def agent_step(self, messages: list[Message], tools: list[Tool], seed: int) -> Message:
        """The next assistant message. A leading system message of ``messages`` is appended to
        the agent system prompt. If no usable reply could be had, the result is an assistant
        message with neither content nor tool calls: callers record that turn as an error."""
        background = ""
        conversation = list(messages)
        if conversation and conversation[0].role == "system":
            background = "\n" + (conversation.pop(0).content or "")
        used_ids = {c.id for m in messages for c in m.tool_calls}

        def parse(reply: ChatReply) -> Message:
            if not reply.tool_calls and not (reply.content or "").strip():
                raise ValueError("the reply has neither content nor tool calls")
            calls = []
            for index, call in enumerate(reply.tool_calls):
                call_id = call.id
                if call_id in used_ids or any(c.id == call_id for c in calls):
                    call_id = f"call_{derive_seed(seed, 'call_id', index):08x}"
                calls.append(ToolCall(id=call_id, name=call.name, arguments=call.arguments))
            return Message(role="assistant", content=reply.content, tool_calls=calls)

        result = self._ask(
            "agent_system",
            {"background": background},
            parse,
            derive_seed(seed, "agent_step", len(messages)),
            conversation=[message_to_openai(m) for m in conversation],
            tools=[t.to_openai_function() for t in tools],
        )
        if not result.ok or result.value is None:
            return Message(role="assistant", content=None)
        return result.value

    def _recent_calls(self, history: list[Message]) -> str:
        calls: dict[str, ToolCall] = {}
        pairs: list[str] = []
        for message in history:
            for call in message.tool_calls:
                calls[call.id] = call
            if message.role == "tool" and message.tool_call_id in calls:
                call = calls[message.tool_call_id]
                pairs.append(f"- {call.name}({call.arguments}) -> {message.content}")
        recent = pairs[-self.simulator_history :] if self.simulator_history else []
        return "\n".join(recent) or "(none yet)"

    def simulate_tool(
        self, tool: Tool, arguments: str, history: list[Message], seed: int
    ) -> ToolOutcome:
        """A simulated result. A result missing a field the output schema requires is retried;
        if no usable result comes back the outcome is a failure marked ``simulator_failed``."""
        required = []
        if isinstance(tool.output_schema, dict) and tool.output_schema.get("type") == "object":
            required = list(tool.output_schema.get("required") or [])

        def parse(reply: ChatReply) -> ToolOutcome:
            body = json_object(reply)
            ok = body["ok"]
            if not isinstance(ok, bool):
                raise ValueError("'ok' must be true or false")
            if not ok:
                error = _text(body, "error")
                return ToolOutcome(ok=False, content=canonical_json({"error": error}), error=error)
            value = body["result"]
            if required:
                if not isinstance(value, dict):
                    raise ValueError("the result must be a JSON object, as the output schema says")
                missing = [k for k in required if k not in value]
                if missing:
                    raise ValueError(f"the result lacks required fields {missing}")
            content = value if isinstance(value, str) else canonical_json(value)
            return ToolOutcome(ok=True, content=content)

        result = self._ask(
            "tool_simulator",
            {
                "tool_name": tool.name,
                "tool_description": tool.description,
                "parameters": canonical_json(tool.parameters),
                "output_schema": canonical_json(tool.output_schema)
                if tool.output_schema
                else "not given",
                "recent_calls": self._recent_calls(history),
                "arguments": arguments,
            },
            parse,
            derive_seed(seed, "tool_simulator", tool.id, arguments, len(history)),
        )
        if not result.ok or result.value is None:
            return ToolOutcome(
                ok=False,
                content=canonical_json({"error": "the tool could not be simulated"}),
                error=f"simulator_failed: {result.error}",
            )
        return result.value

    # -- rewards ------------------------------------------------------------------------------

    def judge_trajectory(
        self, trajectory: Trajectory, tools: list[Tool], seed: int
    ) -> list[Reward]:
        """One reward per dimension of :data:`TRAJECTORY_JUDGES`: ``ok`` with the mean item
        score, ``missing`` when the dimension does not apply (e.g. no tool calls), ``failed``
        with no score when the judgment could not be had."""
        query = next((m.content for m in trajectory.messages if m.role == "user"), None) or ""
        transcript = render_transcript(trajectory.messages)
        used = set(trajectory.tool_ids)
        shown = [t for t in tools if t.id in used] or tools
        rewards = []
        for spec in TRAJECTORY_JUDGES:
            prompt = load_prompt(spec.prompt)
            count = spec.count(trajectory)
            if count == 0:
                rewards.append(
                    self._reward(trajectory, spec, prompt, None, JudgeStatus.MISSING, None,
                                 "not applicable: nothing to judge for this dimension")
                )  # fmt: skip
                continue
            result = self._ask(
                spec.prompt,
                {
                    "query": query,
                    "tool_list": tool_list(shown),
                    "transcript": transcript,
                    "count": count,
                },
                lambda reply, count=count, spec=spec: parse_scores(reply, count, spec.allowed),
                derive_seed(seed, spec.dimension, trajectory.id),
            )
            if result.ok and result.value is not None:
                score, rationale = result.value
                rewards.append(
                    self._reward(trajectory, spec, prompt, score, JudgeStatus.OK, rationale, None)
                )
            else:
                rewards.append(
                    self._reward(trajectory, spec, prompt, None, JudgeStatus.FAILED, None,
                                 result.error)
                )  # fmt: skip
        return rewards

    # -- QA traces -----------------------------------------------------------------------------

    def generate_traces(
        self, server: ToolServer, tools: list[Tool], n: int, hops: tuple[int, int], seed: int
    ) -> list[QATrace]:
        """ASTRA's QA trace writer, seeded with the server's domain and what its tools do.
        Traces that do not parse are dropped (the call is logged as failed)."""
        if n < 1:
            return []

        def parse(reply: ChatReply) -> list[QATrace]:
            body = json_object(reply)
            entries = body["traces"]
            if not isinstance(entries, list):
                raise ValueError("'traces' must be a list")
            traces = []
            for entry in entries:
                steps = [SubQuestion.model_validate(s) for s in entry["sub_questions"]]
                traces.append(
                    QATrace(
                        domain=server.domain,
                        server_id=server.id,
                        question=str(entry["question"]),
                        answer=str(entry["answer"]),
                        user_background=str(entry.get("user_background") or ""),
                        scenario=entry.get("scenario") or scenario_of(steps),
                        sub_questions=steps,
                        source=f"llm:{self.name}",
                        parent_ids=[server.id],
                    )
                )
            return traces

        context = f"{server.title}: {server.description}\n{tool_list(tools[:30])}"
        result = self._ask(
            "qa_generation",
            {
                "domain": server.domain,
                "context": context,
                "n": n,
                "min_hops": hops[0],
                "max_hops": hops[1],
            },
            parse,
            derive_seed(seed, "qa_generation", server.id, n),
        )
        return list(result.value or [])[:n] if result.ok else []

    def synthesize_tool(self, trace: QATrace, step: SubQuestion, seed: int) -> SubQuestion | None:
        """A tool for one step: document, call arguments and code with mock data; None when
        no usable reply came (the step then has no tool, and the trace fails its checks)."""
        answers = {s.sid: s.answer for s in trace.sub_questions}
        context = ", ".join(f"{d} = {answers[d]!r}" for d in step.depends_on if d in answers)

        def parse(reply: ChatReply) -> SubQuestion:
            body = json_object(reply)
            name, code = _text(body, "name"), _text(body, "code")
            parameters, arguments = body["parameters"], body["arguments"]
            if not isinstance(parameters, dict) or parameters.get("type") != "object":
                raise ValueError("'parameters' must be a JSON schema of type object")
            if not isinstance(arguments, dict):
                raise ValueError("'arguments' must be an object of argument values")
            if not name.isidentifier() or f"def {name}(" not in code:
                raise ValueError(f"'code' must define a function named {name!r}")
            return step.model_copy(
                update={
                    "needs_tool": True,
                    "tool_name": name,
                    "arguments": canonical_json(arguments),
                    "tool_code": code,
                    "tool_description": _text(body, "description"),
                    "tool_parameters": canonical_json(parameters),
                }
            )

        result = self._ask(
            "tool_synthesis",
            {
                "domain": trace.domain,
                "question": step.question,
                "answer": step.answer,
                "context": context or "none",
            },
            parse,
            derive_seed(seed, "tool_synthesis", trace.id, step.sid),
        )
        return result.value if result.ok else None

    def confirm_merge(self, tools: list[tuple[str, str, str]], seed: int) -> bool | None:
        """Whether tools (name, description, parameter schema JSON) of different servers share
        one intent; None when no usable judgment came back (the caller then does not merge)."""

        def parse(reply: ChatReply) -> bool:
            value = json_object(reply)["same_intent"]
            if not isinstance(value, bool):
                raise ValueError("'same_intent' must be true or false")
            return value

        listing = "\n".join(f"- {n}: {d} Parameters: {p}" for n, d, p in tools)
        result = self._ask(
            "merge_confirm", {"tools": listing}, parse, derive_seed(seed, "merge", listing)
        )
        return result.value if result.ok else None

    def judge_trace(self, trace: QATrace, seed: int) -> list[QACheck]:
        """ASTRA's trace verification: tool necessity per sub-question (passed when every
        sub-question another depends on needs a tool) and four scores in [0, 1]. A reply that
        cannot be had fails closed: every check ``passed`` None, no score."""
        steps = trace.sub_questions
        listing = "\n".join(
            f"- {s.sid} (hop {s.hop}; depends on {', '.join(s.depends_on) or 'nothing'}): "
            f"{s.question} -> {s.answer}"
            for s in steps
        )

        def parse(reply: ChatReply) -> dict[str, Any]:
            body = json_object(reply)
            necessity = body["tool_necessity"]
            if not isinstance(necessity, list) or len(necessity) != len(steps):
                raise ValueError(f"'tool_necessity' must list {len(steps)} booleans")
            if not all(isinstance(v, bool) for v in necessity):
                raise ValueError("'tool_necessity' must hold only true or false")
            scores = {}
            for name in QA_SCORES:
                value = body[name]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name}: a number in [0, 1], got {value!r}")
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name}: must lie in [0, 1], got {value}")
                scores[name] = float(value)
            rationale = body.get("rationale")
            return {
                "necessity": necessity,
                "scores": scores,
                "rationale": rationale if isinstance(rationale, str) else "",
            }

        result = self._ask(
            "qa_verify",
            {"question": trace.question, "answer": trace.answer, "sub_questions": listing},
            parse,
            derive_seed(seed, "qa_verify", trace.id),
        )
        if not result.ok or result.value is None:
            return [
                QACheck(dimension=name, passed=None, detail=f"failed: {result.error}",
                        judge_model=self.name)
                for name in ("tool_necessity", *QA_SCORES)
            ]  # fmt: skip
        value = result.value
        needed = {d for s in steps for d in s.depends_on}
        toolless = [s.sid for s, need in zip(steps, value["necessity"], strict=True)
                    if s.sid in needed and not need]  # fmt: skip
        checks = [
            QACheck(
                dimension="tool_necessity",
                passed=not toolless,
                detail=f"depended on but needs no tool: {toolless}" if toolless else "",
                judge_model=self.name,
            )
        ]
        checks.extend(
            QACheck(dimension=name, passed=None, score=score, detail=value["rationale"],
                    judge_model=self.name)
            for name, score in value["scores"].items()
        )  # fmt: skip
        return checks

    def _reward(
        self,
        trajectory: Trajectory,
        spec: JudgeSpec,
        prompt: Prompt,
        score: float | None,
        status: JudgeStatus,
        rationale: str | None,
        error: str | None,
    ) -> Reward:
        return Reward(
            target_table=Trajectory.TABLE,
            target_id=trajectory.id,
            dimension=spec.dimension,
            score=score,
            status=status,
            judge_model=self.name,
            prompt_version=prompt.key,
            rationale=rationale,
            error=error,
            parent_ids=[trajectory.id],
        )
