"""ASTRA part 2 as jobs: trajectories -> QA traces -> verified tools -> RL environments.

``synthesize-qa`` (Spark, per server) turns completed trajectories into decomposed QA traces
and runs the rule checks on each (:mod:`jobs.envs.traces`); every trace is kept with its
checks, ``selected`` only when all pass.

``build-environments`` turns the selected traces into environments:

1. **tools** (driver): per (server, tool) every recorded call of every selected trace becomes
   a mock-data row (plus decoys) of one tool (:mod:`jobs.envs.codegen`); calls that need a
   record an earlier write created, and the records writes create, make the tool stateful.
2. **merge** (driver): tools of different servers with the same argument and return
   structure whose documents embed within ``merge_threshold`` cosine similarity are one
   intent: they become one tool under the name of the first (by id), with every member's
   rows.
3. **verify** (Spark, one task per slice of traces): each trace's environment (its tools'
   code, merged) is checked in the sandbox by :func:`jobs.envs.verify.verify_replay`.
4. **write** (driver): an environment per verified trace, with distractor tools drawn from
   the verified pool in ASTRA's three similarity bands (never from the trace's domain); a
   tool is written once, ``verified`` when at least one member verified, listing its
   verified members. Every failed trace goes to ``rejects`` with its reasons.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F

from jobs.base import JobContext
from jobs.envs.codegen import MockRow, created_values, decoys, key_of, python_name, tool_source
from jobs.envs.embed import banded, components, embed, tool_text
from jobs.envs.traces import structure_checks, trace_from_trajectory
from jobs.envs.verify import GoldCall, Verification, verify_replay
from jobs.spark import SparkProgress
from jobs.stages import (
    BackendParams,
    ServerGroup,
    SparkStage,
    llm_for,
    make_synthesizer,
    pack,
    per_server,
)
from jobs.synth.tasks import stable_seed
from sandbox import tools_module
from schemas import (
    Distractor,
    Environment,
    EnvTool,
    ExpectedAnswer,
    LLMCall,
    QATrace,
    Task,
    Tool,
    Trajectory,
    canonical_json,
)
from schemas.answers import normalise

INITIAL_STATE: dict[str, Any] = {"records": {}}


# -- QA traces ---------------------------------------------------------------------------------


QASource = Literal["trajectories", "llm", "both"]


@dataclass(frozen=True)
class QAParams(BackendParams):
    source: QASource = field(
        default="trajectories",
        metadata={
            "help": "where traces come from: the lake's trajectories, an LLM seeded with each "
            "server's domain and tools (needs an LLM backend), or both"
        },
    )
    llm_traces_per_server: int = field(
        default=4, metadata={"help": "traces the LLM writes per server (source llm or both)"}
    )
    min_hops: int = field(default=3, metadata={"help": "fewest steps an LLM trace asks for"})
    max_hops: int = field(default=5, metadata={"help": "most steps an LLM trace asks for"})
    min_steps: int = field(
        default=2, metadata={"help": "select only traces with at least this many sub-questions"}
    )
    keep_percentile: float = field(
        default=85.0,
        metadata={
            "help": "with an LLM backend, keep traces whose mean verification score reaches "
            "this percentile of all judged traces' scores (ASTRA: P85-P90)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_steps < 1:
            raise ValueError(f"min_steps must be at least 1, got {self.min_steps}")
        if not 0.0 <= self.keep_percentile <= 100.0:
            raise ValueError(f"keep_percentile must lie in [0, 100], got {self.keep_percentile}")
        if self.source != "trajectories" and self.backend == "offline":
            raise ValueError(f"source={self.source} needs an LLM backend (backend=openai or vllm)")
        if not 1 <= self.min_hops <= self.max_hops:
            raise ValueError("need 1 <= min_hops <= max_hops")
        if self.llm_traces_per_server < 1:
            raise ValueError("llm_traces_per_server must be at least 1")


def mean_llm_score(trace: QATrace) -> float | None:
    """The mean of a trace's LLM scores; None unless every LLM check was made."""
    judged = [c for c in trace.checks if c.judge_model != "rule"]
    if not judged or any(c.passed is None and c.score is None for c in judged):
        return None
    scores = [c.score for c in judged if c.score is not None]
    return sum(scores) / len(scores) if scores else None


def apply_keep_threshold(traces: list[QATrace], percentile: float) -> tuple[list[QATrace], float]:
    """Select, among traces that passed every check, those whose mean LLM score reaches the
    ``percentile`` of the scores of all such traces; the threshold is returned and recorded.

    >>> from schemas.qa import QACheck
    >>> def t(q, score):
    ...     check = QACheck(dimension="atomicity", passed=None, score=score, judge_model="m")
    ...     return QATrace(domain="d", question=q, answer="a", scenario="single_hop",
    ...                    sub_questions=[], source="s", checks=[check])
    >>> kept, threshold = apply_keep_threshold([t("a", 0.2), t("b", 0.6), t("c", 1.0)], 50)
    >>> [k.selected for k in kept], threshold
    ([False, True, True], 0.6)
    """
    eligible = [mean_llm_score(t) for t in traces if t.selected and mean_llm_score(t) is not None]
    threshold = float(np.percentile(eligible, percentile)) if eligible else 1.0
    out = []
    for trace in traces:
        score = mean_llm_score(trace)
        if not trace.selected:
            out.append(trace)
        elif score is None:
            out.append(
                trace.model_copy(
                    update={
                        "selected": False,
                        "selection": "failed: the LLM checks could not be made",
                    }
                )
            )
        elif score < threshold:
            out.append(
                trace.model_copy(
                    update={
                        "selected": False,
                        "selection": f"failed: LLM score {score:.3f} below the P{percentile:g} "
                        f"threshold {threshold:.3f}",
                    }
                )
            )
        else:
            out.append(
                trace.model_copy(
                    update={
                        "selection": f"all checks passed; LLM score {score:.3f} >= P{percentile:g} "
                        f"threshold {threshold:.3f}"
                    }
                )
            )
    return out, threshold  # fmt: skip


class SynthesizeQA(SparkStage):
    name: ClassVar[str] = "synthesize-qa"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "trajectories -> qa_traces: each completed trajectory decomposed into sub-questions "
        "answered by its tool calls; rule checks (ids, DAG, hops, tools) on every trace; with "
        "an LLM backend, ASTRA's verification scores and a percentile keep threshold"
    )
    inputs: ClassVar[tuple[str, ...]] = ("tool_servers", "tools", "tasks", "trajectories")
    outputs: ClassVar[tuple[str, ...]] = ("qa_traces", "llm_calls")
    Params: ClassVar[type] = QAParams

    def run(self, ctx: JobContext) -> None:
        params: QAParams = self.params
        servers = self.servers(ctx)
        domains = {s.id: s.domain for s in servers}
        seed, api_key = ctx.seed, self.api_key

        by_id = {s.id: s for s in servers}

        def checked(trace: QATrace, synth: Any) -> QATrace:
            checks = structure_checks(trace.sub_questions)
            failed = [c.dimension for c in checks if c.passed is not True]
            if len(trace.sub_questions) < params.min_steps:
                failed.append(f"fewer than {params.min_steps} sub-questions")
            if synth is not None and not failed:
                judged = synth.judge_trace(trace, stable_seed(seed, trace.id))
                checks = [*checks, *judged]
                failed += [c.dimension for c in judged if c.passed is False]
            return trace.model_copy(
                update={
                    "checks": checks,
                    "selected": not failed,
                    "selection": "all rule checks passed"
                    if not failed
                    else "failed: " + ", ".join(failed),
                }
            )

        def with_tools(trace: QATrace, synth: Any) -> QATrace:
            """An LLM trace's tool-needing steps each get a model-written tool."""
            steps = []
            for step in trace.sub_questions:
                if step.needs_tool and step.tool_code is None:
                    step = synth.synthesize_tool(trace, step, stable_seed(seed, trace.id)) or step
                steps.append(step)
            return trace.model_copy(update={"sub_questions": steps})

        def traces_of(group: ServerGroup) -> list[Any]:
            tasks = {t.id: t for t in group.of("tasks")}
            synth = (
                make_synthesizer(params, group, servers, api_key)
                if params.backend != "offline"
                else None
            )
            out = []
            if params.source in ("trajectories", "both"):
                for trajectory in group.of("trajectories"):
                    task = tasks.get(trajectory.task_id)
                    if task is None:
                        continue
                    trace = trace_from_trajectory(
                        trajectory,
                        task,
                        group.of("tools"),
                        domain=domains.get(group.server_id, "general"),
                        source=f"trajectory:{trajectory.agent_model}",
                    )
                    if trace is None:
                        group.dropped["qa_no_usable_call"] += 1
                        continue
                    out.append(checked(trace, synth))
            server = by_id.get(group.server_id)
            if synth is not None and server is not None and params.source in ("llm", "both"):
                written = synth.generate_traces(
                    server,
                    group.of("tools"),
                    params.llm_traces_per_server,
                    (params.min_hops, params.max_hops),
                    stable_seed(seed, server.id),
                )
                if not written:
                    group.dropped["qa_llm_wrote_none"] += 1
                out.extend(checked(with_tools(trace, synth), synth) for trace in written)
            return out

        tasks = self.frame(ctx, "tasks")
        servers_frame = tasks.select(
            F.col("id").alias("_task"), F.col("server_id").alias("_server")
        )
        trajectories = self.frame(ctx, "trajectories")
        trajectories = trajectories.join(
            servers_frame, trajectories["task_id"] == servers_frame["_task"], "inner"
        ).drop("_task")
        # LLM traces are written per server from its tools, whether or not it has tasks.
        needing = None if params.source != "trajectories" else tasks
        context = {
            "tools": (pack(self.of_servers(ctx, "tools", needing), "tools"), Tool),
            "tasks": (pack(tasks, "tasks"), Task),
            "trajectories": (pack(trajectories, "trajectories", "_server"), Trajectory),
        }
        result = per_server(ctx.spark, context, traces_of, QATrace)
        if params.backend == "offline":
            self.finish(ctx, "qa_traces", result)
            return
        # The keep threshold is a percentile of every judged trace's score: a global step,
        # done on the driver over the judged traces (LLM-bound, so not many).
        with SparkProgress(ctx.spark, ctx.count_progress, "judge QA traces"):
            records = result.frame.toArrow().to_pylist()
        traces = [QATrace.from_record(r) for r in records]
        kept, threshold = apply_keep_threshold(traces, params.keep_percentile)
        ctx.run.metrics["qa_keep_threshold"] = {
            "percentile": params.keep_percentile,
            "threshold": round(threshold, 6),
            "judged": sum(mean_llm_score(t) is not None for t in traces),
        }
        ctx.replace("qa_traces", QATrace.to_arrow(kept))
        for reason, count in result.dropped.value.items():
            ctx.dropped[reason] += count
        calls = [LLMCall.model_validate(c) for c in result.calls.value]
        if calls:
            ctx.append("llm_calls", LLMCall.to_arrow(calls))


# -- environments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvParams(BackendParams):
    merge_threshold: float = field(
        default=0.9,
        metadata={
            "help": "tools of different servers with the same argument and return structure "
            "merge when their documents' cosine similarity reaches this"
        },
    )
    distractors_per_band: int = field(
        default=2, metadata={"help": "distractor tools per similarity band (high, medium, low)"}
    )
    decoys_per_row: int = field(
        default=2, metadata={"help": "decoy entries added to a lookup tool per recorded call"}
    )
    verify_slices: int = field(
        default=8, metadata={"help": "Spark tasks the sandbox verification is split into"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.merge_threshold <= 1.0:
            raise ValueError(f"merge_threshold must lie in (0, 1], got {self.merge_threshold}")
        if self.distractors_per_band < 0 or self.decoys_per_row < 0:
            raise ValueError("distractors_per_band and decoys_per_row must be 0 or more")
        if self.verify_slices < 1:
            raise ValueError(f"verify_slices must be at least 1, got {self.verify_slices}")


@dataclass
class DraftTool:
    """A tool being assembled from the calls of many traces (before verification)."""

    server_id: str | None
    domain: str
    name: str
    description: str
    parameters: dict[str, Any]
    output_schema: dict[str, Any] | None
    rows: list[MockRow] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    merged_from: list[str] = field(default_factory=list)
    #: Code an LLM wrote for one step (used as is: never templated, never merged).
    written: str | None = None

    def key_names(self) -> list[str]:
        """What a call is looked up by: the required arguments, unless two recorded calls
        agree on them but not on their results; then every given argument ([])."""
        required = list(self.parameters.get("required") or [])
        return required if required and not self.conflicts(required) else []

    def conflicts(self, key_names: list[str] | None = None) -> dict[str, str]:
        """member -> the earlier member whose call had the same key but another result."""
        names = self.key_names() if key_names is None else key_names
        first: dict[str, tuple[str, Any]] = {}
        clashes = {}
        for member, row in zip(self.members, self.rows, strict=True):
            key = repr(key_of(row.arguments, names))
            if key not in first:
                first[key] = (member, row.result)
            elif first[key][1] != row.result:
                clashes[member] = first[key][0]
        return clashes

    def add(self, row: MockRow, member: str) -> None:
        self.rows.append(row)
        self.members.append(member)

    @property
    def signature(self) -> str:
        """Argument and return structure: parameter names/types, output field names."""
        props = self.parameters.get("properties") or {}
        args = sorted((k, str((v or {}).get("type"))) for k, v in props.items())
        out = sorted((self.output_schema or {}).get("properties") or {})
        return canonical_json(
            {"args": args, "required": sorted(self.parameters.get("required") or []), "out": out}
        )

    def code(self, decoys_per_row: int) -> str:
        if self.written is not None:
            return self.written
        names = self.key_names()
        rows = list(self.rows)
        for row in self.rows:
            if not row.requires and not row.creates:
                rows.extend(decoys(row, names, decoys_per_row))
        return tool_source(self.name, self.description, self.parameters, rows, key_all=not names)


DraftKey = tuple[str | None, str]


def _step_rows(trace: QATrace) -> list[tuple[DraftKey, MockRow, str]]:
    """(draft key, mock row, sid) of each tool-needing sub-question, with its state links.

    A recorded call's tool is keyed by (server, tool name), so every trace calling it shares
    it; an LLM-written tool belongs to its trace alone: (trace id, tool name).
    """
    from jobs.envs.codegen import writes_state

    created: set[str] = set()
    out = []
    for step in trace.sub_questions:
        if not step.needs_tool or not step.tool_name or step.arguments is None:
            continue
        arguments = json.loads(step.arguments)
        if step.tool_code is not None:
            out.append(((trace.id, step.tool_name), MockRow(arguments, None), step.sid))
            continue
        result = json.loads(step.result) if step.result else {"answer": step.answer}
        requires = sorted(
            {
                normalise(v)
                for v in arguments.values()
                if not isinstance(v, dict | list) and normalise(v) in created
            }
        )
        creates = created_values(result) if writes_state(step.tool_name) else []
        created.update(creates)
        key = (trace.server_id, step.tool_name)
        out.append((key, MockRow(arguments, result, requires, creates), step.sid))
    return out


def draft_tools(traces: list[QATrace], tools: dict[DraftKey, Tool]) -> dict[DraftKey, DraftTool]:
    """One draft per key of :func:`_step_rows`, holding the rows of every trace using it."""
    drafts: dict[DraftKey, DraftTool] = {}
    for trace in sorted(traces, key=lambda t: t.id):
        steps = {s.sid: s for s in trace.sub_questions}
        for key, row, sid in _step_rows(trace):
            step = steps[sid]
            if key not in drafts and step.tool_code is not None:
                drafts[key] = DraftTool(
                    server_id=trace.server_id,
                    domain=trace.domain,
                    name=python_name(key[1]),
                    description=step.tool_description or key[1],
                    parameters=json.loads(step.tool_parameters or '{"type": "object"}'),
                    output_schema=None,
                    written=step.tool_code,
                )
            elif key not in drafts:
                tool = tools.get(key)
                drafts[key] = DraftTool(
                    server_id=trace.server_id,
                    domain=trace.domain,
                    name=python_name(key[1]),
                    description=tool.description if tool else key[1],
                    parameters=dict(tool.parameters) if tool else {"type": "object"},
                    output_schema=dict(tool.output_schema) if tool and tool.output_schema else None,
                )
            drafts[key].add(row, f"{trace.id}#{sid}")
    return drafts


def merge_by_intent(
    drafts: dict[DraftKey, DraftTool],
    threshold: float,
    confirm: Callable[[list[DraftTool]], bool | None] | None = None,
) -> dict[DraftKey, DraftTool]:
    """Map each draft key to the tool that serves it after cross-server merging.

    Candidates share their argument and return structure and embed within ``threshold``;
    ``confirm`` (an LLM's judgment, when one is configured) must then say yes: a no or a
    failed judgment keeps them apart.
    """
    by_signature: dict[str, list[DraftKey]] = defaultdict(list)
    for key in sorted(drafts, key=str):
        if drafts[key].written is None:  # merging LLM-written code needs a model; not done
            by_signature[drafts[key].signature].append(key)
    serving = {key: drafts[key] for key in drafts}
    for keys in by_signature.values():
        servers = {drafts[k].server_id for k in keys}
        if len(keys) < 2 or len(servers) < 2:
            continue
        vectors = embed([tool_text(drafts[k].name, drafts[k].description) for k in keys])
        for group in components(vectors @ vectors.T, threshold):
            if len(group) < 2:
                continue
            members = [keys[i] for i in group]
            if confirm is not None and confirm([drafts[k] for k in members]) is not True:
                continue
            head = drafts[members[0]]
            merged = DraftTool(
                server_id=head.server_id,
                domain=head.domain,
                name=head.name,
                description=head.description,
                parameters=head.parameters,
                output_schema=head.output_schema,
                merged_from=[f"{drafts[k].server_id}/{drafts[k].name}" for k in members],
            )
            for k in members:
                for row, member in zip(drafts[k].rows, drafts[k].members, strict=True):
                    merged.add(row, member)
                serving[k] = merged
    return serving


def _env_spec(
    trace: QATrace, serving: dict[DraftKey, DraftTool], decoys_per_row: int
) -> dict[str, Any]:
    """What the sandbox needs to verify one trace's environment."""
    names: list[str] = []
    codes: list[str] = []
    calls: list[dict[str, Any]] = []
    for key, row, sid in _step_rows(trace):
        tool = serving[key]
        if tool.name not in names:
            names.append(tool.name)
            codes.append(tool.code(decoys_per_row))
        answer = next(s.answer for s in trace.sub_questions if s.sid == sid)
        calls.append(
            {
                "member": f"{trace.id}#{sid}",
                "tool_name": tool.name,
                "arguments": row.arguments,
                "answer": answer,
                "key_arguments": list(key_of(row.arguments, tool.key_names())),
                "needs_state": bool(row.requires),
            }
        )
    return {
        "qa_id": trace.id,
        "code": tools_module(list(zip(names, codes, strict=True))),
        "tool_names": json.dumps(names),
        "calls": json.dumps(calls),
    }


_SANDBOX: Any = None


def _shared_sandbox() -> Any:
    """One loaded sandbox per Python worker (loading costs ~0.1 s with the compiled cache)."""
    global _SANDBOX
    if _SANDBOX is None:
        from sandbox import Sandbox

        _SANDBOX = Sandbox().load()
    return _SANDBOX


SPEC_SCHEMA = pa.schema(
    [
        ("qa_id", pa.string()),
        ("code", pa.string()),
        ("tool_names", pa.string()),
        ("calls", pa.string()),
    ]
)
SPEC_DDL = "qa_id string, code string, tool_names string, calls string"
VERIFIED_DDL = (
    "qa_id string, ok boolean, failures string, problems string, state_digest string, "
    "runtime_digest string, seconds double"
)
VERIFIED_SCHEMA = pa.schema(
    [
        ("qa_id", pa.string()),
        ("ok", pa.bool_()),
        ("failures", pa.string()),
        ("problems", pa.string()),
        ("state_digest", pa.string()),
        ("runtime_digest", pa.string()),
        ("seconds", pa.float64()),
    ]
)


def verify_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Verify one environment spec in this process's sandbox (run on executors)."""
    start = time.perf_counter()
    calls = [
        GoldCall(
            member=c["member"],
            tool_name=c["tool_name"],
            arguments=c["arguments"],
            answer=c["answer"],
            key_arguments=tuple(c["key_arguments"]),
            needs_state=c["needs_state"],
        )
        for c in json.loads(spec["calls"])
    ]
    check: Verification = verify_replay(
        _shared_sandbox(), spec["code"], INITIAL_STATE, calls, json.loads(spec["tool_names"])
    )
    return {
        "qa_id": spec["qa_id"],
        "ok": check.ok,
        "failures": json.dumps(check.failures, sort_keys=True),
        "problems": json.dumps(check.problems),
        "state_digest": check.state_digest,
        "runtime_digest": check.runtime_digest,
        "seconds": time.perf_counter() - start,
    }


def verify_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = [verify_spec(spec) for spec in batch.to_pylist()]
        yield pa.RecordBatch.from_pylist(rows, schema=VERIFIED_SCHEMA)


def pick_distractors(
    env_vectors: np.ndarray,
    pool_vectors: np.ndarray,
    pool: list[EnvTool],
    domain: str,
    exclude: set[str],
    per_band: int,
    seed: int,
) -> list[Distractor]:
    """Up to ``per_band`` tools per band, seeded: from other domains, never a tool of the
    environment or one with the name of one (the policy calls tools by name)."""
    taken = {t.name for t in pool if t.id in exclude}
    candidates = [
        i
        for i, t in enumerate(pool)
        if t.domain != domain and t.id not in exclude and t.name not in taken
    ]
    if not candidates or per_band == 0 or env_vectors.size == 0:
        return []
    similarity = (pool_vectors[candidates] @ env_vectors.T).max(axis=1)
    by_band: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for index, (band, raw) in zip(candidates, banded(similarity), strict=True):
        by_band[band].append((index, raw))
    rng = random.Random(seed)
    picked = []
    for band in ("high", "medium", "low"):
        options = sorted(by_band.get(band, []), key=lambda item: pool[item[0]].id)
        for index, raw in rng.sample(options, min(per_band, len(options))):
            picked.append(Distractor(tool_id=pool[index].id, band=band, similarity=round(raw, 4)))  # type: ignore[arg-type]
    return picked


class BuildEnvironments(SparkStage):
    name: ClassVar[str] = "build-environments"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "qa_traces -> env_tools, environments: mock-data tools per intent (merged across "
        "traces and servers), verified in the sandbox, with distractors in three bands"
    )
    inputs: ClassVar[tuple[str, ...]] = ("tools", "qa_traces")
    outputs: ClassVar[tuple[str, ...]] = ("env_tools", "environments", "llm_calls")
    Params: ClassVar[type] = EnvParams

    def run(self, ctx: JobContext) -> None:
        params: EnvParams = self.params
        timings: dict[str, float] = defaultdict(float)
        start = time.perf_counter()
        traces = [
            QATrace.from_record(r)
            for r in ctx.read("qa_traces").to_arrow().to_pylist()
            if r["selected"]
        ]
        needed = {(t.server_id, s.tool_name) for t in traces for s in t.sub_questions}
        tools = {}
        for record in ctx.read("tools").to_arrow().to_pylist():
            key = (record["server_id"], record["name"])
            if key in needed:
                tools[key] = Tool.from_record(record)
        drafts = draft_tools(traces, tools)
        timings["drafting_s"] += time.perf_counter() - start

        start = time.perf_counter()
        confirm = None
        calls: list[Any] = []
        if params.backend != "offline":
            synthesizer, log = llm_for(params, self.api_key)
            calls = log.rows

            def confirm(group: list[DraftTool]) -> bool | None:
                described = [(d.name, d.description, canonical_json(d.parameters)) for d in group]
                return synthesizer.confirm_merge(described, ctx.seed)

        serving = merge_by_intent(drafts, params.merge_threshold, confirm)
        if calls:
            ctx.append("llm_calls", LLMCall.to_arrow(list(calls)))
        timings["merge_embedding_s"] += time.perf_counter() - start

        start = time.perf_counter()
        specs = [_env_spec(t, serving, params.decoys_per_row) for t in traces]
        frame = ctx.spark.createDataFrame(
            pa.Table.from_pylist(specs, schema=SPEC_SCHEMA).to_pandas(), schema=SPEC_DDL
        )
        verified = frame.repartition(params.verify_slices, "qa_id").mapInArrow(
            verify_batches, VERIFIED_DDL
        )
        with SparkProgress(ctx.spark, ctx.count_progress, "verify environments in the sandbox"):
            outcome = {r["qa_id"]: r for r in verified.toArrow().to_pylist()}
        timings["verify_wall_s"] += time.perf_counter() - start
        timings["sandbox_s"] = sum(r["seconds"] for r in outcome.values())
        self._write(ctx, params, traces, serving, outcome, timings)

    def _write(
        self,
        ctx: JobContext,
        params: EnvParams,
        traces: list[QATrace],
        serving: dict[DraftKey, DraftTool],
        outcome: dict[str, dict[str, Any]],
        timings: dict[str, float],
    ) -> None:
        start = time.perf_counter()
        verified_members: set[str] = set()
        conflicts = {m: w for d in serving.values() for m, w in d.conflicts().items()}
        for trace in traces:
            result = outcome.get(trace.id)
            if result and result["ok"]:
                verified_members.update(f"{trace.id}#{s.sid}" for s in trace.sub_questions)
            else:
                reasons = json.loads(result["problems"]) if result else ["not verified"]
                for member, why in (json.loads(result["failures"]) if result else {}).items():
                    if member in conflicts:
                        why.append(
                            f"merge conflict: {conflicts[member]} made the same call and got "
                            "another result, which the merged tool returns"
                        )
                    reasons.append(f"{member}: {'; '.join(why)}")
                ctx.quarantine(
                    "environments",
                    {"qa_trace_id": trace.id},
                    "environment_unverified: " + " | ".join(reasons),
                    self.name,
                )
        runtime = next((r["runtime_digest"] for r in outcome.values()), None)
        rows: dict[int, EnvTool] = {}
        for draft in {id(d): d for d in serving.values()}.values():
            code = draft.code(params.decoys_per_row)
            members = sorted(m for m in draft.members if m in verified_members)
            rows[id(draft)] = EnvTool(
                name=draft.name,
                description=draft.description,
                domain=draft.domain,
                server_id=draft.server_id,
                parameters=draft.parameters,
                output_schema=draft.output_schema,
                code=code,
                code_digest="sha256:" + hashlib.sha256(code.encode()).hexdigest(),
                members=members,
                verified=bool(members),
                runtime_digest=runtime,
                parent_ids=sorted({m.split("#")[0] for m in draft.members}),
            )
        pool = sorted((t for t in rows.values() if t.verified), key=lambda t: t.id)
        pool_vectors = embed([tool_text(t.name, t.description) for t in pool])
        index_of = {t.id: i for i, t in enumerate(pool)}
        environments = []
        for trace in traces:
            result = outcome.get(trace.id)
            if not result or not result["ok"]:
                continue
            env_tools: list[EnvTool] = []
            expected = []
            for key, row, sid in _step_rows(trace):
                tool = rows[id(serving[key])]
                if tool not in env_tools:
                    env_tools.append(tool)
                answer = next(s.answer for s in trace.sub_questions if s.sid == sid)
                expected.append(
                    ExpectedAnswer(
                        sub_question_id=sid,
                        tool_name=tool.name,
                        answer=answer,
                        arguments=canonical_json(row.arguments),
                    )
                )
            own = [index_of[t.id] for t in env_tools if t.id in index_of]
            distractors = pick_distractors(
                pool_vectors[own],
                pool_vectors,
                pool,
                trace.domain,
                {t.id for t in env_tools},
                params.distractors_per_band,
                stable_seed(ctx.seed, trace.id),
            )
            environments.append(
                Environment(
                    qa_trace_id=trace.id,
                    domain=trace.domain,
                    prompt=trace.question,
                    user_background=trace.user_background,
                    tool_ids=[t.id for t in env_tools],
                    tool_names=[t.name for t in env_tools],
                    distractor_tool_ids=[d.tool_id for d in distractors],
                    distractors=distractors,
                    initial_state=INITIAL_STATE,
                    expected=expected,
                    stateful=any(row.requires or row.creates for _, row, _ in _step_rows(trace)),
                    runtime_digest=result["runtime_digest"],
                    parent_ids=[trace.id, *[t.id for t in env_tools]],
                )
            )
        ctx.replace("env_tools", EnvTool.to_arrow(sorted(rows.values(), key=lambda t: t.id)))
        ctx.replace("environments", Environment.to_arrow(environments))
        timings["write_embedding_s"] += time.perf_counter() - start
        ctx.run.metrics["seconds"] = {k: round(v, 3) for k, v in timings.items()}
