"""The LLM layer against a real OpenAI-compatible HTTP server on loopback.

The server (``chat_server.ChatServer``, stdlib ``http.server`` in a thread) answers
``POST /v1/chat/completions`` with protocol-shaped completions chosen per test: JSON replies,
tool calls, usage, malformed replies, HTTP 500s and slow replies.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_server import ChatServer, Responder, completion, serving
from factories import derived_rows

from jobs.config import LLMConfig
from jobs.llm import (
    BackendUnavailable,
    CallLog,
    LLMSynthesizer,
    OpenAICompatibleBackend,
    VLLMOfflineBackend,
    ask_structured,
    chat_backend,
    load_prompt,
)
from jobs.llm.prompts import Prompt, PromptError, parse_prompt
from jobs.llm.structured import json_object
from jobs.llm.synthesizer import TRAJECTORY_JUDGES
from schemas import Chain, Message, Reward, Task, Tool, ToolCall, ToolEdge, ToolServer


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    with serving() as srv:
        yield srv


@pytest.fixture
def chat(server: ChatServer) -> ChatServer:
    server.requests.clear()
    server.headers_seen.clear()
    server.delay_s = 0.0
    server.responder = lambda payload: (200, completion("{}"))
    return server


@pytest.fixture
def backend(chat: ChatServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(chat.base_url, "tiny-test", api_key="sk-test", timeout_s=5)


def ok(content: str) -> tuple[int, Any]:
    return 200, completion(content)


def scripted(*replies: tuple[int, Any]) -> Responder:
    queue = list(replies)
    return lambda payload: queue.pop(0)


def prompt_text(payload: dict[str, Any]) -> str:
    return payload["messages"][0]["content"] or ""


ECHO = Prompt("echo", "3", "Return JSON with key a for {thing}.")


def parse_a(reply: Any) -> int:
    value = json_object(reply)["a"]
    if not isinstance(value, int):
        raise ValueError("a must be an int")
    return value


# -- client and structured replies ---------------------------------------------------------


def test_structured_reply_is_parsed_and_logged(chat: ChatServer, backend) -> None:
    chat.responder = lambda payload: ok('Here you go: ```json\n{"a": 5}\n```')
    log = CallLog(run_id="run-1")
    result = ask_structured(
        backend, ECHO, {"thing": "x"}, parse_a, log=log, seed=9, temperature=0.3, max_tokens=64
    )
    assert result.ok and result.value == 5 and result.attempts == 1
    sent = chat.requests[0]
    assert sent["model"] == "tiny-test" and sent["seed"] == 9 and sent["max_tokens"] == 64
    assert sent["temperature"] == 0.3
    assert sent["messages"] == [{"role": "user", "content": "Return JSON with key a for x."}]
    assert chat.headers_seen[0]["Authorization"] == "Bearer sk-test"
    [row] = log.rows
    assert (row.backend, row.model, row.prompt_name, row.prompt_version) == (
        "openai",
        "tiny-test",
        "echo",
        "3",
    )
    assert row.status == "ok" and row.attempt == 1 and row.run_id == "run-1"
    assert (row.prompt_tokens, row.completion_tokens) == (11, 7)
    assert row.latency_s > 0 and row.error is None
    assert log.to_arrow().num_rows == 1


def test_malformed_reply_is_retried_with_the_error_shown(chat: ChatServer, backend) -> None:
    chat.responder = scripted(ok("sorry, I cannot do JSON"), ok('{"a": 2}'))
    log = CallLog()
    result = ask_structured(backend, ECHO, {"thing": "y"}, parse_a, log=log, seed=1)
    assert result.ok and result.value == 2 and result.attempts == 2
    assert [r.status for r in log.rows] == ["parse_error", "ok"]
    assert log.rows[0].request_hash == log.rows[1].request_hash
    assert [r.attempt for r in log.rows] == [1, 2]
    retry = chat.requests[1]
    assert retry["seed"] != chat.requests[0]["seed"]
    assert retry["messages"][1] == {"role": "assistant", "content": "sorry, I cannot do JSON"}
    assert "could not be used" in retry["messages"][2]["content"]


def test_a_reply_that_never_parses_fails_after_bounded_retries(chat: ChatServer, backend) -> None:
    chat.responder = lambda payload: ok('{"a": "not a number"}')
    log = CallLog()
    result = ask_structured(backend, ECHO, {"thing": "z"}, parse_a, retries=2, log=log)
    assert not result.ok and result.value is None and result.status == "failed"
    assert len(chat.requests) == 3
    assert [r.status for r in log.rows] == ["parse_error"] * 3
    assert "a must be an int" in (result.error or "")


def test_http_500_fails_closed_and_is_logged(chat: ChatServer, backend) -> None:
    chat.responder = lambda payload: (500, {"error": {"message": "engine overloaded"}})
    log = CallLog()
    result = ask_structured(backend, ECHO, {"thing": "q"}, parse_a, retries=1, log=log)
    assert result.status == "failed" and result.value is None
    assert [r.status for r in log.rows] == ["http_error", "http_error"]
    assert "500" in (log.rows[0].error or "") and "engine overloaded" in (log.rows[0].error or "")
    assert all(r.prompt_tokens is None for r in log.rows)


def test_a_non_json_body_is_a_backend_error(chat: ChatServer, backend) -> None:
    chat.responder = lambda payload: (200, b"<html>proxy error</html>")
    log = CallLog()
    result = ask_structured(backend, ECHO, {"thing": "q"}, parse_a, retries=0, log=log)
    assert not result.ok and log.rows[0].status == "backend_error"


def test_a_slow_server_times_out(chat: ChatServer) -> None:
    chat.delay_s = 1.0
    slow = OpenAICompatibleBackend(chat.base_url, "tiny-test", timeout_s=0.2)
    log = CallLog()
    result = ask_structured(slow, ECHO, {"thing": "q"}, parse_a, retries=0, log=log)
    assert not result.ok
    assert log.rows[0].status == "timeout" and log.rows[0].latency_s < 0.9


def test_an_unreachable_server_is_an_http_error(chat: ChatServer) -> None:
    closed = ChatServer()
    url = closed.base_url
    closed.server_close()
    log = CallLog()
    gone = OpenAICompatibleBackend(url, "tiny-test", timeout_s=2)
    result = ask_structured(gone, ECHO, {"thing": "q"}, parse_a, retries=0, log=log)
    assert not result.ok and log.rows[0].status == "http_error"


# -- the synthesizer -------------------------------------------------------------------------


@pytest.fixture
def travel(sample_rows: tuple[list[ToolServer], list[Tool]]) -> tuple[ToolServer, list[Tool]]:
    servers, tools = sample_rows
    server = servers[0]
    return server, [t for t in tools if t.server_id == server.id]


def make_synth(backend: OpenAICompatibleBackend, log: CallLog, **kw: Any) -> LLMSynthesizer:
    return LLMSynthesizer(backend, log, **kw)


def test_agent_step_turns_openai_tool_calls_into_messages(chat: ChatServer, backend, travel):
    _, tools = travel
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "search_flights", "arguments": '{"origin": "CDG"}'},
    }
    chat.responder = lambda payload: (200, completion(None, [call], 120, 15))
    log = CallLog()
    synth = make_synth(backend, log)
    history = [
        Message(role="system", content="The user is a frequent flyer."),
        Message(role="user", content="Find me a flight from Paris to Rome on Friday."),
    ]
    step = synth.agent_step(history, tools, seed=3)
    assert step.role == "assistant" and step.content is None
    assert step.tool_calls == [
        ToolCall(id="call_abc", name="search_flights", arguments='{"origin": "CDG"}')
    ]
    sent = chat.requests[0]
    assert sent["messages"][0]["role"] == "system"
    assert "The user is a frequent flyer." in sent["messages"][0]["content"]
    assert sent["messages"][1] == {"role": "user", "content": history[1].content}
    assert {t["function"]["name"] for t in sent["tools"]} == {t.name for t in tools}
    [row] = log.rows
    assert (row.prompt_name, row.prompt_tokens, row.completion_tokens) == ("agent_system", 120, 15)

    # A repeated id is renamed so tool results stay unambiguous; a final answer has no calls.
    follow = [
        *history,
        step,
        Message(role="tool", tool_call_id="call_abc", name="search_flights", content="[]"),
    ]
    chat.responder = scripted((200, completion(None, [call])), ok("No flights on Friday."))
    again = synth.agent_step(follow, tools, seed=4)
    assert again.tool_calls[0].id != "call_abc"
    assert chat.requests[-1]["messages"][2]["tool_calls"][0]["id"] == "call_abc"
    final = synth.agent_step(follow, tools, seed=5)
    assert final.content == "No flights on Friday." and final.tool_calls == []


def test_agent_step_that_cannot_be_had_is_an_empty_message(chat: ChatServer, backend, travel):
    chat.responder = lambda payload: (500, {"error": "down"})
    step = make_synth(backend, CallLog(), retries=1).agent_step(
        [Message(role="user", content="hi")], travel[1], seed=0
    )
    assert step == Message(role="assistant", content=None)


def _trajectory(tools: list[Tool]):
    chain, task, trajectory = derived_rows(tools)
    return chain, task, trajectory


def test_a_judge_that_errors_yields_failed_rewards_without_scores(chat, backend, travel):
    _, tools = travel
    _, _, trajectory = _trajectory(tools)
    chat.responder = lambda payload: (500, {"error": {"message": "judge crashed"}})
    log = CallLog()
    rewards = make_synth(backend, log, retries=1).judge_trajectory(trajectory, tools, seed=0)
    assert {r.dimension for r in rewards} == {s.dimension for s in TRAJECTORY_JUDGES}
    for reward in rewards:
        assert reward.score is None
        assert reward.status in ("failed", "missing")
    assert any(r.status == "failed" for r in rewards)
    assert all("http_error" in (r.error or "") for r in rewards if r.status == "failed")
    table = Reward.to_arrow(rewards)
    for rule in Reward.ROW_RULES:
        assert not any(rule.is_bad(table).to_pylist()), rule.reason
    assert len(log.rows) == 2 * sum(r.status == "failed" for r in rewards)


def test_malformed_judgments_fail_closed_and_good_ones_score(chat, backend, travel):
    _, tools = travel
    _, _, trajectory = _trajectory(tools)

    def judge(payload: dict[str, Any]) -> tuple[int, Any]:
        text = prompt_text(payload)
        count = int(re.search(r"holds exactly (\d+) numbers", text).group(1))
        if "economically" in text:
            return ok('{"scores": [7], "rationale": "out of range"}')  # never valid
        return ok(json.dumps({"scores": [1] * count, "rationale": "fine"}))

    chat.responder = judge
    rewards = {
        r.dimension: r
        for r in make_synth(backend, CallLog()).judge_trajectory(trajectory, tools, 1)
    }
    conciseness = rewards["tool_call_conciseness"]
    assert conciseness.status == "failed" and conciseness.score is None
    assert "parse_error" in (conciseness.error or "")
    assert rewards["final_answer"].status == "ok" and rewards["final_answer"].score == 1.0
    assert rewards["tool_call_success"].score == 1.0
    assert rewards["final_answer"].prompt_version == "judge_final_answer@1"
    assert all(r.parent_ids == [trajectory.id] for r in rewards.values())


def test_verify_chain_votes_by_strict_majority_and_back_translates(chat, backend, travel):
    _, tools = travel
    chain = Chain(
        server_id=tools[0].server_id,
        tool_ids=[tools[0].id, tools[3].id],
        tool_names=[tools[0].name, tools[3].name],
        length=2,
        seed=1,
        verdicts=[],
    )

    def run(votes: list[tuple[int, Any]], back: list[str] | None) -> list:
        queue = list(votes)

        def respond(payload: dict[str, Any]) -> tuple[int, Any]:
            text = prompt_text(payload)
            if text.startswith("Judge whether"):
                return queue.pop(0)
            if text.startswith("Write the request"):
                return ok('{"query": "Book me the cheapest flight from Paris to Rome."}')
            if back is None:
                return ok("no idea")
            return ok(json.dumps({"tools": back}))

        chat.responder = respond
        return make_synth(backend, CallLog(), votes=3, retries=0).verify_chain(chain, tools, 5)

    yes, no = ok('{"realistic": true, "reason": "r"}'), ok('{"realistic": false, "reason": "r"}')
    err = (500, {"error": "x"})
    vote, back = run([yes, no, yes], list(chain.tool_names))
    assert (vote.verifier, vote.passed) == ("llm_vote", True)
    assert vote.detail == "yes=2 no=1 failed=0 of 3" and vote.judge_model == "openai@tiny-test"
    assert (back.verifier, back.passed) == ("back_translation", True)
    assert run([no, no, err], ["book_flight"])[0].passed is False
    assert run([yes, err, err], None)[0].passed is None  # failures decide nothing
    assert run([err, err, err], None)[0].passed is None
    wrong = run([no, yes, no], [chain.tool_names[1], chain.tool_names[0]])
    assert wrong[0].passed is False and wrong[1].passed is False
    assert run([yes, yes, yes], None)[1].passed is None  # round trip not judged


def test_judge_edges_adds_llm_evidence_and_new_edges(chat, backend, travel):
    server, tools = travel
    by = {t.name: t for t in tools}
    candidate = ToolEdge(
        server_id=server.id,
        source_tool_id=by["search_flights"].id,
        target_tool_id=by["get_flight_details"].id,
        weight=0.4,
        evidence=[],
    )
    reply = {
        "chains": [
            ["search_flights", "get_flight_details"],
            ["search_flights", "get_flight_details", "book_flight"],
            ["no_such_tool", "search_flights"],
        ]
    }
    chat.responder = lambda payload: ok(json.dumps(reply))
    edges = make_synth(backend, CallLog()).judge_edges(server, tools, [candidate], seed=2)
    first, new = edges
    assert first.id == candidate.id and first.weight == 1.0
    assert [e.kind for e in first.evidence] == ["llm"] and first.evidence[0].score == 1.0
    assert (new.source_tool_id, new.target_tool_id) == (
        by["get_flight_details"].id,
        by["book_flight"].id,
    )
    assert new.weight == 0.5 and new.parent_ids == [new.source_tool_id, new.target_tool_id]
    assert "search_flights" in prompt_text(chat.requests[0])

    chat.responder = lambda payload: (500, {"error": "x"})
    unchanged = make_synth(backend, CallLog(), retries=0).judge_edges(server, tools, [candidate], 2)
    assert unchanged == [candidate]


def test_queries_augmentation_and_rubric(chat, backend, travel):
    server, tools = travel
    chain, task, _ = _trajectory(tools)
    synth = make_synth(backend, CallLog())
    chat.responder = lambda payload: ok(
        json.dumps(
            {
                "queries": [
                    "Find a flight to Rome on Friday and show me its details.",
                    "Run search_flights then get_flight_details for Rome.",
                    "Find a flight to Rome on Friday and show me its details.",
                    "I fly to Oslo next week; find a flight and tell me the baggage rules.",
                ]
            }
        )
    )
    queries = synth.generate_queries(server, chain, tools, n=3, seed=4)
    assert queries == [
        "Find a flight to Rome on Friday and show me its details.",
        "I fly to Oslo next week; find a flight and tell me the baggage rules.",
    ]
    first_requests = list(chat.requests)
    synth.generate_queries(server, chain, tools, n=3, seed=4)
    assert chat.requests[len(first_requests) :] == first_requests  # same seed, same request

    chat.responder = lambda payload: ok(
        '{"persona": "A retired teacher who travels often.", "query": "Dear assistant, ..."}'
    )
    new = synth.augment(task, "persona", seed=1)
    assert isinstance(new, Task) and new.augmentation == "persona"
    assert new.persona == "A retired teacher who travels often." and new.parent_ids == [task.id]

    chat.responder = lambda payload: ok(
        '{"query_quality": {"score": 4}, "scenario_realism": {"score": 5},'
        ' "tool_use_necessity": {"score": 3}}'
    )
    scores = synth.score_task(task, chain, tools, seed=0)
    assert [(s.criterion, s.score, s.status) for s in scores] == [
        ("query_quality", 4.0, "ok"),
        ("scenario_realism", 5.0, "ok"),
        ("tool_use_necessity", 3.0, "ok"),
    ]
    chat.responder = lambda payload: ok(
        '{"query_quality": 9, "scenario_realism": 5, "tool_use_necessity": 3}'
    )
    failed = synth.score_task(task, chain, tools, seed=0)
    assert all(s.score is None and s.status == "failed" for s in failed)


def test_tool_simulator_sees_history_and_fails_closed(chat, backend, travel):
    _, tools = travel
    tool = next(t for t in tools if t.name == "get_flight_details")
    history = [
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="c1", name="search_flights", arguments='{"origin":"CDG"}')],
        ),
        Message(role="tool", tool_call_id="c1", name="search_flights", content='["AF123"]'),
    ]
    chat.responder = lambda payload: ok('{"ok": true, "result": {"flight": "AF123", "seats": 4}}')
    synth = make_synth(backend, CallLog())
    outcome = synth.simulate_tool(tool, '{"flight_id": "AF123"}', history, seed=1)
    assert outcome.ok and json.loads(outcome.content) == {"flight": "AF123", "seats": 4}
    sent = prompt_text(chat.requests[-1])
    assert 'search_flights({"origin":"CDG"}) -> ["AF123"]' in sent
    assert '{"flight_id": "AF123"}' in sent

    chat.responder = lambda payload: ok('{"ok": false, "error": "unknown flight"}')
    failed = synth.simulate_tool(tool, '{"flight_id": "X"}', history, seed=1)
    assert not failed.ok and failed.error == "unknown flight"

    chat.responder = lambda payload: ok("I am not a tool")
    broken = synth.simulate_tool(tool, "{}", [], seed=1)
    assert not broken.ok and (broken.error or "").startswith("simulator_failed")


# -- prompts, backends from config ----------------------------------------------------------


def test_every_shipped_prompt_loads_with_a_version() -> None:
    from jobs.llm.prompts import PROMPTS_DIR

    names = sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))
    assert len(names) >= 18
    for name in names:
        prompt = load_prompt(name)
        assert prompt.name == name and prompt.version and prompt.template
        prompt.render({v: "x" for v in prompt.variables})
    assert load_prompt("agent_system").role == "system"


def test_missing_and_unknown_variables_are_clear_errors() -> None:
    prompt = load_prompt("chain_vote")
    with pytest.raises(PromptError, match=r"chain_vote@1: missing variables \['chain'\]"):
        prompt.render({"domain": "travel"})
    with pytest.raises(PromptError, match=r"unknown variables \['extra'\]"):
        prompt.render({"domain": "travel", "chain": "1. f", "extra": 1})


def test_bad_prompt_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="front matter needs 'version'"):
        parse_prompt("---\nname: a\n---\nbody")
    with pytest.raises(PromptError, match="starts with a '---'"):
        parse_prompt("name: a\nbody")
    with pytest.raises(PromptError, match="not a plain name"):
        parse_prompt("---\nname: a\nversion: 1\n---\nuse {x[0]}")
    (tmp_path / "alpha.md").write_text("---\nname: beta\nversion: 1\n---\nhi\n")
    with pytest.raises(PromptError, match="must match the file name"):
        load_prompt("alpha", tmp_path)
    with pytest.raises(PromptError, match="known prompts"):
        load_prompt("gamma", tmp_path)


def test_chat_backend_from_config(chat: ChatServer) -> None:
    config = LLMConfig(backend="openai", base_url=chat.base_url, model="tiny-test")
    backend = chat_backend(config, api_key=None)
    assert isinstance(backend, OpenAICompatibleBackend) and backend.model == "tiny-test"
    assert backend.url == chat.base_url + "/chat/completions"
    with pytest.raises(ValueError, match="deterministic synthesizer"):
        chat_backend(LLMConfig())


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_names_the_gpu_extra_when_vllm_is_missing() -> None:
    with pytest.raises(BackendUnavailable, match=r"\.\[gpu\]"):
        VLLMOfflineBackend("Qwen/Qwen3-0.6B")
