"""The whole trajectory pipeline through the OpenAI-compatible backend, over real HTTP.

A scripted model stands behind a real chat-completions server on loopback: it recognises which
versioned prompt it was sent (by the prompt's fixed text) and answers in that prompt's reply
format, the way a well-behaved model would. Spark executors call it from their own Python
workers. One judge (the final-answer judge) always answers prose instead of JSON, so the run
also shows judges failing closed end to end.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from chat_server import ChatServer, completion, serving

from astra.pipeline import StageOutcome, environment_jobs, run_stages, run_trajectory_pipeline
from jobs.config import load_config
from jobs.environments import mean_llm_score
from jobs.llm import load_prompt
from jobs.llm.synthesizer import RUBRIC_CRITERIA
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from schemas import (
    Chain,
    Environment,
    EnvTool,
    LLMCall,
    QATrace,
    Reward,
    ToolEdge,
    Trajectory,
)

API_KEY = "sk-pipeline-test"
PROMPT_NAMES = (
    "agent_system",
    "augment_persona",
    "back_translate_chain",
    "back_translate_query",
    "chain_proposal",
    "chain_vote",
    "judge_conciseness",
    "judge_final_answer",
    "judge_initial_plan",
    "judge_observation",
    "judge_planning",
    "judge_query_understanding",
    "judge_tool_success",
    "qa_generation",
    "qa_verify",
    "query_generation",
    "task_rubric",
    "tool_simulator",
    "tool_synthesis",
)
PLACEHOLDER = re.compile(r"(?<!\{)\{[a-z_]+\}(?!\})")


def static_parts(name: str) -> list[str]:
    """The fixed text of a prompt (between its placeholders), as it appears once rendered."""
    template = load_prompt(name).template.replace("{{", "{").replace("}}", "}")
    return [part.strip() for part in PLACEHOLDER.split(template) if len(part.strip()) > 20]


SIGNATURES = {name: static_parts(name) for name in PROMPT_NAMES}


def which_prompt(text: str) -> str:
    """The prompt whose fixed text the message holds (the most of it, for near-twins)."""
    scores = {
        name: sum(len(part) for part in parts)
        for name, parts in SIGNATURES.items()
        if all(part in text for part in parts)
    }
    if not scores:
        raise AssertionError(f"no prompt matches: {text[:200]}")
    return max(scores, key=lambda name: scores[name])


def value_for(schema: dict[str, Any]) -> Any:
    """A plausible value of a JSON schema: every required field of an object filled."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {key: value_for(properties.get(key) or {}) for key in required}
    return {
        "string": "ABC123",
        "integer": 2,
        "number": 2.5,
        "boolean": True,
        "array": [],
    }.get(kind, "value")


def tool_names_in(text: str) -> list[str]:
    """Tool names of a rendered tool list (``- name: ...``) or chain (``1. name: ...``)."""
    return re.findall(r"^(?:-|\d+\.) ([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def scripted_model(payload: dict[str, Any]) -> tuple[int, Any]:
    text = payload["messages"][0]["content"]
    name = which_prompt(text)
    if name == "agent_system":
        return 200, agent_turn(payload)
    if name == "chain_proposal":
        names = tool_names_in(text)
        # One chain along the listing, and one pair the schema matcher may not have linked.
        reply: Any = {"chains": [names[:3], [names[-1], names[0]]]}
    elif name == "chain_vote":
        reply = {"realistic": True}
    elif name == "back_translate_query":
        reply = {"query": "Help me, step by step: <<" + "|".join(tool_names_in(text)) + ">>"}
    elif name == "back_translate_chain":
        found = re.search(r"<<(.*?)>>", text)
        reply = {"tools": found.group(1).split("|") if found else []}
    elif name == "query_generation":
        reply = {"queries": [f"Please sort out request {digest(text)}-{i} for me" for i in (1, 2)]}
    elif name == "augment_persona":
        reply = {"query": f"As a busy parent: request {digest(text)}", "persona": "a busy parent"}
    elif name == "task_rubric":
        reply = {criterion: {"score": 5, "reason": "clear"} for criterion in RUBRIC_CRITERIA}
    elif name == "tool_simulator":
        schema = re.search(r"^Output \(JSON schema, when known\): (.*)$", text, re.MULTILINE)
        output = json.loads(schema.group(1)) if schema and schema.group(1) != "not given" else {}
        reply = {"ok": True, "result": value_for(output) if output else "done"}
    elif name == "qa_verify":
        steps = len(re.findall(r"^- q\d+ \(hop", text, flags=re.MULTILINE))
        spread = int(digest(text), 16) % 5 / 4  # a spread of scores, so a percentile bites
        reply = {
            "tool_necessity": [True] * steps,
            "dependency_consistency": spread,
            "atomicity": 1.0,
            "forced_serialization": 1.0,
            "completeness": spread,
            "rationale": "checked",
        }
    elif name == "qa_generation":
        tag = digest(text)
        reply = {"traces": [written_trace(f"{tag}-{i}") for i in range(2)]}
    elif name == "tool_synthesis":
        reply = written_tool(text)
    elif name == "judge_final_answer":
        return 200, completion("The answer looks fine to me.")  # never JSON: fails closed
    else:
        count = int(re.search(r"exactly (\d+)", text).group(1))  # type: ignore[union-attr]
        reply = {"scores": [1] * count, "rationale": "fine"}
    return 200, completion(json.dumps(reply))


def written_trace(tag: str) -> dict[str, Any]:
    """A two-hop trace as the model writes it: concrete answers, the second needs the first."""
    return {
        "question": f"Which courier serves the depot of order {tag}?",
        "answer": f"courier-{tag}",
        "scenario": "multi_hop",
        "user_background": "a shop owner",
        "sub_questions": [
            {"sid": "q1", "question": f"Which depot ships order {tag}?",
             "answer": f"depot-{tag}", "hop": 1, "depends_on": [], "needs_tool": True},
            {"sid": "q2", "question": "Which courier serves that depot?",
             "answer": f"courier-{tag}", "hop": 2, "depends_on": ["q1"], "needs_tool": True},
        ],
    }  # fmt: skip


def written_tool(text: str) -> dict[str, Any]:
    """A lookup tool as the model writes it: a small table holding the step's answer."""
    answer = re.search(r"^Its answer: (.*)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    name = f"lookup_{digest(text)[:6]}"
    key = f"key-{digest(answer)[:6]}"
    table = {key: {"value": answer}, "other": {"value": "something else"}}
    code = (
        f"TABLE = {table!r}\n\n"
        f"def {name}(key):\n"
        "    if key not in TABLE:\n"
        "        return {'error': 'no record for that key'}\n"
        "    return TABLE[key]\n"
    )
    return {
        "name": name,
        "description": "Look up a record by its key.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}},
                       "required": ["key"]},
        "arguments": {"key": key},
        "code": code,
    }  # fmt: skip


def agent_turn(payload: dict[str, Any]) -> dict[str, Any]:
    """Call the first offered tool once with schema-filled arguments, then answer."""
    if any(m["role"] == "tool" for m in payload["messages"]):
        return completion("All done: your request is handled.")
    function = payload["tools"][0]["function"]
    arguments = value_for(function.get("parameters") or {"type": "object"})
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": function["name"], "arguments": json.dumps(arguments)},
    }
    return completion(None, tool_calls=[call])


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Lake, list[StageOutcome], ChatServer]]:
    with pytest.MonkeyPatch.context() as env, serving() as server:
        env.setenv("ASTRA_TEST_LLM_KEY", API_KEY)
        server.responder = scripted_model
        config = load_config(
            None,
            {
                "llm.backend": "openai",
                "llm.base_url": server.base_url,
                "llm.model": "scripted",
                "llm.api_key_env": "ASTRA_TEST_LLM_KEY",
                "llm.votes": "1",
                "llm.max_retries": "1",
                "spark.master": "local[2]",
                "spark.shuffle_partitions": "2",
                "synthesis.chains_per_server": "2",
                "synthesis.queries_per_chain": "1",
                "synthesis.augmentations": "persona",
                "synthesis.failure_rate": "0.0",
                "synthesis.max_turns": "4",
                "environments.min_steps": "1",
                "environments.qa_source": "both",
                "environments.llm_traces_per_server": "2",
                "environments.keep_percentile": "50",
            },
        )
        factory = SparkSessionFactory(
            SparkConfig(master="local[2]", python=sys.executable, shuffle_partitions=2)
        )
        lake = Lake(tmp_path_factory.mktemp("openai-pipeline") / "lake")
        try:
            outcomes = run_trajectory_pipeline(lake, config, "builtin:sample", factory=factory)
            outcomes += run_stages(lake, config, environment_jobs(config), factory=factory)
        finally:
            factory.stop()
        yield lake, outcomes, server


def rows(lake: Lake, table: str, model: Any) -> list[Any]:
    return [model.from_record(r) for r in lake.read(table).to_arrow().to_pylist()]


def test_every_stage_ran_through_the_server_and_every_call_is_logged(run) -> None:
    lake, outcomes, server = run
    assert [o.stage for o in outcomes][-7:] == [
        "sample-chains",
        "generate-tasks",
        "generate-trajectories",
        "score-trajectories",
        "select-sft",
        "synthesize-qa",
        "build-environments",
    ]
    calls = rows(lake, "llm_calls", LLMCall)
    prompts = Counter(c.prompt_name for c in calls)
    assert set(prompts) == set(PROMPT_NAMES)
    assert all(c.model == "scripted" and c.latency_s >= 0 for c in calls)
    # Every request made (retries included) is one logged attempt.
    assert len(calls) == len(server.requests)
    assert all(h.get("Authorization") == f"Bearer {API_KEY}" for h in server.headers_seen)
    recorded = json.dumps([r for r in lake.query("SELECT * FROM runs").to_dicts()], default=str)
    assert API_KEY not in recorded


def test_graph_edges_carry_llm_evidence(run) -> None:
    lake, _, _ = run
    edges = rows(lake, "tool_edges", ToolEdge)
    kinds = Counter(e.kind for edge in edges for e in edge.evidence)
    assert kinds["schema_match"] > 0 and kinds["llm"] > 0
    llm_only = [e for e in edges if {x.kind for x in e.evidence} == {"llm"}]
    assert llm_only, "a pair only the model proposed becomes an edge"


def test_chains_carry_passing_llm_verdicts(run) -> None:
    lake, _, _ = run
    chains = rows(lake, "chains", Chain)
    assert chains
    for chain in chains:
        by_verifier = {v.verifier: v for v in chain.verdicts}
        assert by_verifier["llm_vote"].passed is True
        assert by_verifier["back_translation"].passed is True
        assert by_verifier["llm_vote"].judge_model == "openai@scripted"


def test_trajectories_use_the_llm_agent_and_simulator(run) -> None:
    lake, _, _ = run
    trajectories = rows(lake, "trajectories", Trajectory)
    assert trajectories and len(trajectories) == lake.read("tasks").count_rows()
    for trajectory in trajectories:
        roles = [m.role for m in trajectory.messages]
        assert roles[-1] == "assistant" and "tool" in roles
        tool_message = next(m for m in trajectory.messages if m.role == "tool")
        assert tool_message.content and "could not be simulated" not in tool_message.content
        assert trajectory.messages[-1].content == "All done: your request is handled."


def test_a_judge_that_never_parses_fails_closed_and_others_score(run) -> None:
    lake, _, _ = run
    judged = [r for r in rows(lake, "rewards", Reward) if r.judge_model == "openai@scripted"]
    final = [r for r in judged if r.dimension == "final_answer"]
    assert final and all(r.status == "failed" and r.score is None for r in final)
    assert all(r.error for r in final)
    others = [r for r in judged if r.dimension != "final_answer" and r.status == "ok"]
    assert others and all(r.score == 1.0 for r in others)
    assert lake.read("sft_examples").count_rows() > 0


def test_qa_traces_are_judged_and_kept_above_the_recorded_percentile(run) -> None:
    lake, outcomes, _ = run
    traces = rows(lake, "qa_traces", QATrace)
    judged = [t for t in traces if any(c.judge_model == "openai@scripted" for c in t.checks)]
    assert judged and len(judged) == len(traces)
    recorded = outcomes[-2].result.run.metrics["qa_keep_threshold"]
    assert recorded["percentile"] == 50 and recorded["judged"] == len(judged)
    threshold = recorded["threshold"]
    for trace in judged:
        score = mean_llm_score(trace)
        assert score is not None
        assert trace.selected == (score >= threshold), trace.selection
    assert 0 < sum(t.selected for t in judged) < len(judged)


def test_llm_written_traces_get_llm_written_tools_verified_in_the_sandbox(run) -> None:
    lake, _, _ = run
    written = [t for t in rows(lake, "qa_traces", QATrace) if t.source == "llm:openai@scripted"]
    assert len(written) == 2 * 5
    assert all(s.tool_code and s.tool_name for t in written for s in t.sub_questions)
    selected = {t.id for t in written if t.selected}
    environments = rows(lake, "environments", Environment)
    from_llm = [e for e in environments if e.qa_trace_id in selected]
    assert from_llm and len(from_llm) == len(selected)
    tools = {t.id: t for t in rows(lake, "env_tools", EnvTool)}
    for env in from_llm:
        assert all(tools[i].verified and tools[i].name.startswith("lookup_") for i in env.tool_ids)
