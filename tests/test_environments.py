"""Environment synthesis: each verification check rejects what it must and keeps what it must,
merging keeps every member's answer, and the pipeline's environments replay from the lake."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from astra.pipeline import run_environment_pipeline
from jobs.config import load_config
from jobs.environments import DraftTool, _env_spec, draft_tools, merge_by_intent, verify_spec
from jobs.envs.codegen import MockRow, created_values, tool_source
from jobs.envs.traces import structure_checks
from jobs.envs.verify import GoldCall, verify_replay
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from sandbox import Environment as SandboxEnvironment
from sandbox import Sandbox, Session, tools_module
from schemas import Environment, EnvTool, QATrace, SubQuestion, canonical_json
from training.rewards import f1, outcome_of

STATE = {"records": {}}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


def lookup_code(rows: list[MockRow]) -> str:
    return tool_source("get_weather", "Current weather of a city.", WEATHER, rows)


PARIS = MockRow({"city": "Paris"}, {"city": "Paris", "temperature_c": 21, "sky": "clear"})
GOLD = GoldCall("qa-1#q1", "get_weather", {"city": "Paris"}, "clear", key_arguments=("city",))


def test_generated_lookup_passes_every_check(sandbox: Sandbox) -> None:
    check = verify_replay(sandbox, lookup_code([PARIS]), STATE, [GOLD], ["get_weather"])
    assert check.ok, (check.failures, check.problems)


def test_a_tool_whose_parameter_names_are_not_identifiers_verifies(sandbox: Sandbox) -> None:
    """OpenAPI parameters such as ``user-id`` reach the generated tool through ``**kwargs``."""
    schema = {
        "type": "object",
        "properties": {"user-id": {"type": "string"}},
        "required": ["user-id"],
    }
    row = MockRow({"user-id": "u-42"}, {"user-id": "u-42", "plan": "gold"})
    code = tool_source("get-user", "The plan of a user.", schema, [row])
    gold = GoldCall("qa-1#q1", "get-user", {"user-id": "u-42"}, "gold", ("user-id",))
    check = verify_replay(sandbox, code, STATE, [gold], ["get-user"])
    assert check.ok, (check.failures, check.problems)


def test_a_tool_whose_output_depends_on_the_seed_is_nondeterministic(sandbox: Sandbox) -> None:
    # No forbidden name in sight: randomness reached through getattr, so only running it
    # under two seeds can tell.
    code = (
        "def get_weather(city):\n"
        "    rnd = getattr(__builtins__, '__im' + 'port__')('random') "
        "if not isinstance(__builtins__, dict) else __builtins__['__im' + 'port__']('random')\n"
        "    return {'sky': 'clear', 'temperature_c': rnd.randint(0, 10**9)}\n"
    )
    check = verify_replay(sandbox, code, STATE, [GOLD], ["get_weather"])
    assert any("nondeterministic" in r for r in check.failures["qa-1#q1"])


def test_code_that_imports_the_clock_is_rejected_before_running(sandbox: Sandbox) -> None:
    code = "import time\n" + lookup_code([PARIS])
    check = verify_replay(sandbox, code, STATE, [GOLD], ["get_weather"])
    assert not check.ok and check.problems == ["line 1: imports time (reads the clock)"]


def test_an_echoing_tool_fails(sandbox: Sandbox) -> None:
    code = "def get_weather(city):\n    return {'sky': 'clear', 'city': city}\n"
    check = verify_replay(sandbox, code, STATE, [GOLD], ["get_weather"])
    assert "echoes its arguments" in check.failures["qa-1#q1"]


def test_a_constant_lookup_fails_the_perturbation_check(sandbox: Sandbox) -> None:
    code = "def get_weather(city):\n    return {'sky': 'clear'}\n"
    check = verify_replay(sandbox, code, STATE, [GOLD], ["get_weather"])
    assert "returns the same answer with city changed" in check.failures["qa-1#q1"]


def test_a_wrong_answer_fails(sandbox: Sandbox) -> None:
    wrong = GoldCall("qa-1#q1", "get_weather", {"city": "Paris"}, "rain", ("city",))
    check = verify_replay(sandbox, lookup_code([PARIS]), STATE, [wrong], ["get_weather"])
    assert "answer 'rain' not in the returned value" in check.failures["qa-1#q1"]


def test_duplicate_tool_names_fail(sandbox: Sandbox) -> None:
    code = lookup_code([PARIS])
    check = verify_replay(sandbox, code, STATE, [GOLD], ["get_weather", "get-weather"])
    assert check.problems == ["tool names not unique: ['get_weather']"]


BOOK = {
    "type": "object",
    "properties": {"flight_id": {"type": "string"}, "passenger": {"type": "string"}},
    "required": ["flight_id", "passenger"],
}
GET = {
    "type": "object",
    "properties": {"booking_id": {"type": "string"}},
    "required": ["booking_id"],
}


def booking_code(get_requires: bool = True) -> str:
    booked = {"booking_id": "BK-7", "status": "confirmed"}
    book = MockRow({"flight_id": "AF1", "passenger": "Ada"}, booked, creates=created_values(booked))
    get = MockRow(
        {"booking_id": "BK-7"},
        {"booking_id": "BK-7", "seat": "12A"},
        requires=["bk-7"] if get_requires else [],
    )
    return (
        tool_source("book_flight", "Book a seat.", BOOK, [book])
        + "\n\n"
        + tool_source("get_booking", "A booking.", GET, [get])
    )


BOOKING_CALLS = [
    GoldCall("qa-2#q1", "book_flight", {"flight_id": "AF1", "passenger": "Ada"}, "BK-7"),
    GoldCall("qa-2#q2", "get_booking", {"booking_id": "BK-7"}, "12A", needs_state=True),
]


def test_stateful_tools_share_state_within_a_session(sandbox: Sandbox) -> None:
    code = booking_code()
    check = verify_replay(sandbox, code, STATE, BOOKING_CALLS, ["book_flight", "get_booking"])
    assert check.ok, check.failures
    alone = Session(sandbox, SandboxEnvironment(code=code, initial_state=STATE))
    assert "error" in alone.call('get_booking(booking_id="BK-7")').value


def test_a_read_that_ignores_state_fails_the_state_check(sandbox: Sandbox) -> None:
    code = booking_code(get_requires=False)
    check = verify_replay(sandbox, code, STATE, BOOKING_CALLS, ["book_flight", "get_booking"])
    assert check.failures == {"qa-2#q2": ["answers without the record an earlier call creates"]}


def test_cyclic_trace_fails_its_rule_checks() -> None:
    steps = [
        SubQuestion(sid="q1", question="?", answer="1", hop=2, depends_on=["q2"], needs_tool=True,
                    tool_name="f", arguments="{}"),
        SubQuestion(sid="q2", question="?", answer="2", hop=2, depends_on=["q1"], needs_tool=True,
                    tool_name="g", arguments="{}"),
    ]  # fmt: skip
    checks = {c.dimension: c for c in structure_checks(steps)}
    assert checks["acyclic"].passed is False and "cycle" in checks["acyclic"].detail
    assert checks["ids"].passed is True


def test_unknown_dependency_and_toolless_producer_fail() -> None:
    steps = [
        SubQuestion(sid="q1", question="?", answer="1", hop=1, needs_tool=False),
        SubQuestion(sid="q2", question="?", answer="2", hop=2, depends_on=["q1", "q9"],
                    needs_tool=True, tool_name="g", arguments="{}"),
    ]  # fmt: skip
    checks = {c.dimension: c.passed for c in structure_checks(steps)}
    assert checks == {
        "ids": False,
        "acyclic": True,
        "hops": True,
        "tool_for_non_leaf": False,
        "calls": True,
    }


def _trace(server: str, city: str, sky: str, tool: str = "get_weather") -> QATrace:
    step = SubQuestion(
        sid="q1",
        question=f"What is the sky in {city}?",
        answer=sky,
        hop=1,
        needs_tool=True,
        tool_name=tool,
        arguments=canonical_json({"city": city}),
        result=canonical_json({"city": city, "sky": sky}),
    )
    return QATrace(
        domain=f"domain-{server}",
        server_id=server,
        question=f"Sky in {city}?",
        answer=sky,
        scenario="single_hop",
        sub_questions=[step],
        source="test",
    )


def test_merge_within_and_across_servers_keeps_every_members_answer(sandbox: Sandbox) -> None:
    from schemas import Tool

    traces = [
        _trace("s1", "Paris", "clear"),
        _trace("s1", "Oslo", "snow"),
        _trace("s2", "Lima", "fog", tool="current_weather"),
    ]
    tools = {
        ("s1", "get_weather"): Tool(server_id="s1", name="get_weather", domain="d",
                                    description="Current weather of a city.", parameters=WEATHER,
                                    source_format="mcp"),
        ("s2", "current_weather"): Tool(server_id="s2", name="current_weather", domain="d",
                                        description="Current weather of a city.",
                                        parameters=WEATHER, source_format="mcp"),
    }  # fmt: skip
    drafts = draft_tools(traces, tools)
    assert len(drafts) == 2 and len(drafts[("s1", "get_weather")].members) == 2
    serving = merge_by_intent(drafts, threshold=0.9)
    merged = serving[("s2", "current_weather")]
    assert merged is serving[("s1", "get_weather")]
    assert sorted(merged.members) == sorted(f"{t.id}#q1" for t in traces)
    for trace in traces:
        outcome = verify_spec(_env_spec(trace, serving, decoys_per_row=2))
        assert outcome["ok"], outcome
    # An LLM's confirmation, when configured, must say yes: no, or no judgment, keeps apart.
    for verdict in (False, None):
        apart = merge_by_intent(drafts, threshold=0.9, confirm=lambda group, v=verdict: v)
        assert apart[("s2", "current_weather")] is not apart[("s1", "get_weather")]
    together = merge_by_intent(drafts, threshold=0.9, confirm=lambda group: True)
    assert together[("s2", "current_weather")] is together[("s1", "get_weather")]


def test_conflicting_calls_fall_back_to_every_argument_as_the_key() -> None:
    draft = DraftTool(
        server_id="s", domain="d", name="search", description="Search.",
        parameters={"type": "object", "properties": {"q": {"type": "string"},
                    "limit": {"type": "integer"}}, "required": ["q"]},
        output_schema=None,
    )  # fmt: skip
    draft.add(MockRow({"q": "lamp", "limit": 1}, {"id": "A"}), "t1#q1")
    assert draft.key_names() == ["q"]
    draft.add(MockRow({"q": "lamp", "limit": 5}, {"id": "B"}), "t2#q1")
    assert draft.key_names() == [] and draft.conflicts() == {}
    draft.add(MockRow({"q": "lamp", "limit": 5}, {"id": "C"}), "t3#q1")
    assert draft.conflicts() == {"t3#q1": "t2#q1"}


# -- the pipeline on the shipped catalog --------------------------------------------------------


@pytest.fixture(scope="module")
def built(pipeline_lake: Lake) -> Iterator[Lake]:
    from conftest import PIPELINE_SETTINGS

    config = load_config(None, PIPELINE_SETTINGS)
    factory = SparkSessionFactory(
        SparkConfig(master="local[2]", python=sys.executable, shuffle_partitions=2)
    )
    try:
        again = run_environment_pipeline(pipeline_lake, config, factory=factory)
    finally:
        factory.stop()
    assert [o.stage for o in again] == ["synthesize-qa", "build-environments"]
    assert all(o.result.reused for o in again)
    yield pipeline_lake


def test_every_environment_uses_verified_tools_and_has_distractors(built: Lake) -> None:
    envs = [Environment.from_record(r) for r in built.read("environments").to_arrow().to_pylist()]
    tools = {
        r["id"]: EnvTool.from_record(r) for r in built.read("env_tools").to_arrow().to_pylist()
    }
    assert len(envs) >= 5
    assert any(e.stateful for e in envs) and any(not e.stateful for e in envs)
    for env in envs:
        assert all(tools[i].verified for i in env.tool_ids)
        assert {d.band for d in env.distractors} <= {"high", "medium", "low"}
        assert all(tools[d].domain != env.domain for d in env.distractor_tool_ids)
        names = [tools[i].name for i in env.tool_ids + env.distractor_tool_ids]
        assert len(names) == len(set(names))


def test_replaying_a_solved_task_from_the_lake_reproduces_the_answers(
    built: Lake, sandbox: Sandbox
) -> None:
    envs = [Environment.from_record(r) for r in built.read("environments").to_arrow().to_pylist()]
    tools = {r["id"]: r for r in built.read("env_tools").to_arrow().to_pylist()}
    for env in envs:
        every = [tools[i] for i in env.tool_ids + env.distractor_tool_ids]
        code = tools_module([(tool["name"], tool["code"]) for tool in every])
        session = Session(sandbox, SandboxEnvironment(code=code, initial_state=env.initial_state))
        calls = []
        for answer in env.expected:
            result = session.call_function(answer.tool_name, json.loads(answer.arguments))
            calls.append((answer.tool_name, result.value))
        assert f1(outcome_of(env.expected, calls)) == pytest.approx(1.0, abs=1e-5), env.id


def test_env_cli_lists_and_tries_an_environment(built: Lake) -> None:
    from typer.testing import CliRunner

    from astra.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["env", "list", "--lake", built.uri, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    env_id = json.loads(listed.stdout)[0]["id"]
    tried = runner.invoke(app, ["env", "try", env_id, "--gold", "--lake", built.uri, "-f", "json"])
    assert tried.exit_code == 0, tried.output
    body = json.loads(tried.stdout)
    assert body["solved"] == body["sub_tasks"] and body["rewards"]["f1"] == pytest.approx(1, 1e-5)
    wrong = runner.invoke(
        app, ["env", "try", env_id, "--call", "nope()", "--lake", built.uri, "-f", "json"]
    )
    assert json.loads(wrong.stdout)["rewards"]["f1"] == 0.0


# -- external check: BFCL's executable backends as sandbox tools ----------------------------------


def test_bfcl_backends_converted_to_sandbox_tools_reproduce_bfcl(sandbox: Sandbox) -> None:
    from jobs.envs.external import check_bfcl_class

    for name in ("TicketAPI", "TwitterAPI"):
        check = check_bfcl_class(sandbox, name)
        assert check.verified, check.mismatches[:3]
        assert check.entries >= 20 and check.calls >= 40


def test_bfcl_backends_that_read_randomness_or_the_clock_are_rejected(sandbox: Sandbox) -> None:
    from jobs.envs.external import check_bfcl_class

    assert check_bfcl_class(sandbox, "MessageAPI").static_problems == [
        "line 1: imports random (uses randomness)"
    ]
    assert not check_bfcl_class(sandbox, "GorillaFileSystem").verified


def test_the_bfcl_check_fails_a_converter_that_drops_state(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.envs import external

    forgetful = external._WRAPPER.replace(
        'STATE["instance"] = _astra_pack(dict(vars(api)))', "pass"
    )
    assert forgetful != external._WRAPPER
    monkeypatch.setattr(external, "_WRAPPER", forgetful)
    check = external.check_bfcl_class(sandbox, "TicketAPI")
    assert not check.verified and check.mismatches
