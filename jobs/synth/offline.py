"""The offline deterministic synthesizer (``offline@1``): no model, every step by rule.

What it does:

- ``judge_edges`` returns the candidate edges unchanged (the schema-typed graph is the graph).
- ``verify_chain`` gives the ``satisfiability`` verdict only (:mod:`jobs.synth.chains`). It
  never produces ``llm_vote`` or ``back_translation`` verdicts: those need a model, and the
  offline backend does not pretend to have judged.
- ``generate_queries`` realises template queries from the chain (:mod:`jobs.synth.tasks`):
  sampled typed values, a scenario, the steps as purpose phrases from the tool descriptions in
  chain order, never a tool name; a query is emitted only if it parses back to the same steps
  and values.
- ``augment``: ``diverse`` (new values and scenario), ``complicate`` (an added budget,
  deadline or policy constraint), ``persona`` (rewritten for a sampled persona). It needs the
  server and its tools, given at construction; for an unknown server it returns None.
- ``generate_traces`` and ``synthesize_tool`` make nothing: offline QA traces are derived from
  completed trajectories and their tools are templates over the recorded calls.
- ``confirm_merge`` accepts what the structure gate and the embedding threshold matched.
- ``judge_trace`` makes no checks: a QA trace's rule checks run for every backend, and the
  LLM's scores are not imitated.
- ``score_task``: the rule rubric of :func:`jobs.synth.tasks.rubric` (status ``ok``).
- ``agent_step`` is an ORACLE: it reads the query back into the chain's steps and values and
  calls the next step's tool with the query's values and the earlier outputs (by the edge
  evidence field -> param mapping, else by an output field of the same name), retries once
  after a failed call, and ends with a final answer that quotes the last tool output. It
  solves tasks realised by this module; it is not a general agent.
- ``simulate_tool`` is :class:`jobs.synth.agent.OfflineSimulator`.
- ``judge_trajectory`` judges nothing: it returns the model-judged ASTRA dimensions as
  ``missing`` rows (the rule-decidable ones are in :mod:`jobs.synth.rewards`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from jobs.synth.agent import OfflineSimulator, is_error_content
from jobs.synth.chains import check_satisfiability, param_schemas, param_sources, required_params
from jobs.synth.interface import AugmentKind, ToolOutcome
from jobs.synth.tasks import (
    PERSONAS,
    POLICIES,
    ParsedQuery,
    names_tools,
    parse_query,
    purpose_phrase,
    realise_query,
    rubric,
    sample_task_values,
    sample_value,
    stable_seed,
    task_slots,
)
from schemas import (
    Chain,
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
)
from schemas.qa import QACheck, SubQuestion
from schemas.rewards import JudgeStatus
from schemas.tasks import RubricScore

MODEL_JUDGED_DIMENSIONS = (
    "per_step_planning",
    "tool_output_understanding",
    "query_understanding",
    "initial_plan",
)
MAX_ATTEMPTS_PER_STEP = 2

_MISSING = object()


def resolve_field(output: Any, field: str) -> Any:
    """The value at ``field`` (``a.b``, ``items[].id``, ``items[0].id``) of a tool output.

    Arrays resolve to their first item. When the path does not resolve, the first value of a
    key equal to the path's last name is searched depth-first. Returns a sentinel when absent.

    >>> output = {"flights": [{"flight_id": "F1"}, {"flight_id": "F2"}]}
    >>> resolve_field(output, "flights[].flight_id")
    'F1'
    >>> resolve_field({"a": {"flight_id": "F9"}}, "flight_id")
    'F9'
    """
    parts = [p for p in re.split(r"\.|\[\d*\]", field) if p]
    current = output
    for part in parts:
        while isinstance(current, list):
            current = current[0] if current else _MISSING
        if not isinstance(current, dict) or part not in current:
            current = _MISSING
            break
        current = current[part]
    while isinstance(current, list) and parts:
        current = current[0] if current else _MISSING
    if current is not _MISSING or not parts:
        return current
    return _find_key(output, parts[-1])


def fit_value(value: Any, schema: Any) -> Any:
    """An earlier output's value shaped for the parameter it feeds, where the graph linked
    them across a type: one value into a list parameter, a numeric id string into a number, a
    number into a string id. Anything else is passed as it is.

    >>> fit_value("ITE-1", {"type": "array", "items": {"type": "string"}})
    ['ITE-1']
    >>> fit_value("42", {"type": "integer"}), fit_value(7, {"type": "string"})
    (42, '7')
    >>> fit_value("REC-9", {"type": "integer"})
    'REC-9'
    """
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "array" and not isinstance(value, list):
        return [value]
    if kind in ("integer", "number") and isinstance(value, str):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:
            return value
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _find_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value and not isinstance(value[key], dict | list):
            return value[key]
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return _MISSING
    for child in children:
        found = _find_key(child, key)
        if found is not _MISSING:
            return found
    return _MISSING


def _scalars(output: Any, limit: int = 6) -> list[tuple[str, Any]]:
    """Top-level scalar fields of an output, then those of first array items."""
    if not isinstance(output, dict):
        return [("result", output)] if output is not None else []
    found = [(k, v) for k, v in output.items() if not isinstance(v, dict | list)]
    for key, value in output.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            found += [
                (f"{key}[0].{k}", v) for k, v in value[0].items() if not isinstance(v, dict | list)
            ]
    return found[:limit]


class OfflineSynthesizer:
    """Rule-based backend of the :class:`jobs.synth.interface.Synthesizer` protocol.

    ``servers`` and ``tools`` are the catalog (``augment`` needs them); ``edges`` are the tool
    graph's rows, used for satisfiability, task slots and the oracle's field -> param mapping.
    """

    def __init__(
        self,
        servers: Sequence[ToolServer] = (),
        tools: Sequence[Tool] = (),
        edges: Sequence[ToolEdge] = (),
    ) -> None:
        self.servers = {s.id: s for s in servers}
        self.tools_by_server: dict[str, list[Tool]] = {}
        for tool in sorted(tools, key=lambda t: t.id):
            self.tools_by_server.setdefault(tool.server_id, []).append(tool)
        self.edges = sorted(edges, key=lambda e: e.id)
        self.simulator = OfflineSimulator()

    @property
    def name(self) -> str:
        return "offline@1"

    def judge_edges(
        self, server: ToolServer, tools: list[Tool], candidates: list[ToolEdge], seed: int
    ) -> list[ToolEdge]:
        return list(candidates)

    def verify_chain(self, chain: Chain, tools: list[Tool], seed: int) -> list[Verdict]:
        by_id = {t.id: t for t in tools}
        unknown = [t for t in chain.tool_ids if t not in by_id]
        if unknown:
            return [
                Verdict(
                    verifier="satisfiability",
                    passed=None,
                    detail=f"tools not given: {unknown}",
                    judge_model=self.name,
                )
            ]
        verdict = check_satisfiability([by_id[t] for t in chain.tool_ids], self.edges)
        return [verdict.model_copy(update={"judge_model": self.name})]

    def _realisable(
        self, query: str, steps: Sequence[Tool], values: dict[str, Any], tools: Sequence[Tool]
    ) -> bool:
        if names_tools(query, tools):
            return False
        parsed = parse_query(query, tools)
        return [t.id for t in parsed.steps] == [t.id for t in steps] and parsed.values == values

    def generate_queries(
        self, server: ToolServer, chain: Chain, tools: list[Tool], n: int, seed: int
    ) -> list[str]:
        by_id = {t.id: t for t in tools}
        if any(t not in by_id for t in chain.tool_ids):
            return []
        steps = [by_id[t] for t in chain.tool_ids]
        slots = task_slots(steps, self.edges)
        queries: list[str] = []
        for k in range(3 * n):
            if len(queries) >= n:
                break
            rng = random.Random(stable_seed("query", seed, chain.id, k))
            values = sample_task_values(slots, rng)
            query = realise_query(server, steps, values, rng)
            if query not in queries and self._realisable(query, steps, values, tools):
                queries.append(query)
        return queries

    def augment(self, task: Task, kind: AugmentKind, seed: int) -> Task | None:
        server = self.servers.get(task.server_id)
        tools = self.tools_by_server.get(task.server_id, [])
        if server is None or not tools:
            return None
        parsed = parse_query(task.query, tools)
        if not parsed.steps:
            return None
        rng = random.Random(stable_seed("augment", kind, seed, task.id))
        values = dict(parsed.values)
        persona: str | None = None
        constraint: str | None = None
        if kind == "diverse":
            for _ in range(8):
                values = sample_task_values(task_slots(parsed.steps, self.edges), rng)
                if values != parsed.values or not values:
                    break
        elif kind == "complicate":
            constraint = self._constraint(rng)
        else:
            persona = rng.choice(PERSONAS)
        query = realise_query(
            server, parsed.steps, values, rng, persona=persona, constraint=constraint
        )
        if query == task.query or not self._realisable(query, parsed.steps, values, tools):
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

    @staticmethod
    def _constraint(rng: random.Random) -> str:
        choice = rng.randrange(3)
        if choice == 0:
            return f"Keep the total cost under {rng.randint(8, 60) * 25} EUR."
        if choice == 1:
            deadline = sample_value("deadline_date", {"type": "string"}, rng)
            return f"It all has to be settled by {deadline}."
        return rng.choice(POLICIES)

    def score_task(
        self, task: Task, chain: Chain | None, tools: list[Tool], seed: int
    ) -> list[RubricScore]:
        by_id = {t.id: t for t in tools}
        if chain is not None and all(t in by_id for t in chain.tool_ids):
            steps = [by_id[t] for t in chain.tool_ids]
        else:
            steps = parse_query(task.query, tools).steps
        return rubric(task.query, steps, tools, self.edges, self.name)

    # -- the oracle agent --------------------------------------------------------------------
    def agent_step(self, messages: list[Message], tools: list[Tool], seed: int) -> Message:
        query = next((m.content for m in messages if m.role == "user" and m.content), "")
        plan = parse_query(query, tools)
        if not plan.steps:
            return Message(
                role="assistant",
                content="I could not work out which of the available tools this request needs.",
            )
        outputs, failures, last_error = self._progress(messages, plan)
        done = len(outputs)
        n_calls = sum(len(m.tool_calls) for m in messages if m.role == "assistant")
        if done == len(plan.steps):
            return Message(role="assistant", content=self._summary(plan, outputs))
        if failures >= MAX_ATTEMPTS_PER_STEP:
            step = purpose_phrase(plan.steps[done])
            return Message(
                role="assistant",
                content=f"I could not finish your request: the step to {step} failed "
                f"{failures} times ({last_error}). Please try again later.",
            )
        tool = plan.steps[done]
        args = self._arguments(plan, done, outputs)
        call = ToolCall(id=f"call_{n_calls + 1}", name=tool.name, arguments=json.dumps(args))
        return Message(role="assistant", content=None, tool_calls=[call])

    @staticmethod
    def _progress(messages: Sequence[Message], plan: ParsedQuery) -> tuple[list[Any], int, str]:
        """Outputs of the steps done so far, failed attempts at the next step, last error."""
        results = {m.tool_call_id: m.content for m in messages if m.role == "tool"}
        outputs: list[Any] = []
        failures = 0
        last_error = ""
        for message in messages:
            for call in message.tool_calls:
                if len(outputs) >= len(plan.steps) or call.name != plan.steps[len(outputs)].name:
                    continue
                content = results.get(call.id)
                if content is None:
                    continue
                if is_error_content(content):
                    failures += 1
                    error = json.loads(content).get("error") if content else None
                    last_error = (
                        str(error.get("message")) if isinstance(error, dict) else str(error)
                    )
                    continue
                try:
                    outputs.append(json.loads(content))
                except ValueError:
                    outputs.append(content)
                failures = 0
        return outputs, failures, last_error

    def _arguments(self, plan: ParsedQuery, index: int, outputs: Sequence[Any]) -> dict[str, Any]:
        tool = plan.steps[index]
        sources = param_sources(plan.steps, index, self.edges)
        required = set(required_params(tool))
        args: dict[str, Any] = {}
        schemas = param_schemas(tool)
        for name in schemas:
            if name in sources:
                step, field = sources[name]
                value = resolve_field(outputs[step], field)
                if value is not _MISSING:
                    args[name] = fit_value(value, schemas[name])
                    continue
            if name in plan.values:
                args[name] = plan.values[name]
                continue
            if name in required:
                for earlier in reversed(outputs[:index]):
                    value = resolve_field(earlier, name)
                    if value is not _MISSING:
                        args[name] = value
                        break
        return args

    @staticmethod
    def _summary(plan: ParsedQuery, outputs: Sequence[Any]) -> str:
        last = purpose_phrase(plan.steps[-1])
        facts = "; ".join(f"{k}: {v}" for k, v in _scalars(outputs[-1]))
        return f"All done. The last step was to {last}. Result: {facts or 'no details returned'}."

    def simulate_tool(
        self, tool: Tool, arguments: str, history: list[Message], seed: int
    ) -> ToolOutcome:
        return self.simulator.execute(tool, arguments, history, seed)

    def generate_traces(
        self, server: ToolServer, tools: list[Tool], n: int, hops: tuple[int, int], seed: int
    ) -> list[QATrace]:
        return []  # offline traces come from trajectories (jobs.envs.traces)

    def synthesize_tool(self, trace: QATrace, step: SubQuestion, seed: int) -> SubQuestion | None:
        return None  # offline tools are templates over recorded calls (jobs.envs.codegen)

    def confirm_merge(self, tools: list[tuple[str, str, str]], seed: int) -> bool | None:
        return True  # the structure gate and embedding threshold are the offline rule

    def judge_trace(self, trace: QATrace, seed: int) -> list[QACheck]:
        return []  # no model to judge with; the rule checks run for every backend

    def judge_trajectory(
        self, trajectory: Trajectory, tools: list[Tool], seed: int
    ) -> list[Reward]:
        return [
            Reward(
                target_table="trajectories",
                target_id=trajectory.id,
                dimension=dimension,
                score=None,
                status=JudgeStatus.MISSING,
                judge_model=self.name,
                prompt_version="none",
                error="the offline backend has no model to judge this dimension",
                parent_ids=[trajectory.id],
            )
            for dimension in MODEL_JUDGED_DIMENSIONS
        ]
