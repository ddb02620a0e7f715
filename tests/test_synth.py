"""Trajectory synthesis (offline backend): chains, tasks, the agent loop, rewards, SFT selection.

Tiny real data with known answers: a planted tool graph built by hand, and the shipped sample
catalog's travel server with its known field -> param edges.
"""

from __future__ import annotations

import doctest
import json
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

import jobs.synth.agent as agent_module
import jobs.synth.chains as chains_module
import jobs.synth.offline as offline_module
import jobs.synth.rewards as rewards_module
import jobs.synth.sft as sft_module
import jobs.synth.tasks as tasks_module
from jobs.synth.agent import OfflineSimulator, SandboxExecutor, run_agent
from jobs.synth.chains import build_graph, check_satisfiability, enumerate_paths, sample_chains
from jobs.synth.interface import Synthesizer
from jobs.synth.offline import OfflineSynthesizer
from jobs.synth.rewards import REGISTRY, check_weights, mean_reward, score_trajectory
from jobs.synth.sft import select_sft
from jobs.synth.tasks import names_tools, parse_query, passes_rubric
from schemas import Chain, EdgeEvidence, Task, Tool, ToolEdge, ToolServer, Trajectory
from schemas.rewards import JudgeStatus
from schemas.tools import server_from_mcp, tool_from_mcp

CATALOG = Path(__file__).resolve().parents[1] / "schemas" / "samples" / "tool_catalog.json"
TRAVEL_CHAIN = [
    "search_flights",
    "get_flight_details",
    "register_passenger",
    "book_flight",
    "cancel_booking",
]


def _edge(server: ToolServer, a: Tool, b: Tool, pairs: list[tuple[str, str]], w: float = 0.9):
    evidence = [
        EdgeEvidence(kind="schema_match", source_field=f, target_param=p, score=w) for f, p in pairs
    ]
    return ToolEdge(
        server_id=server.id,
        source_tool_id=a.id,
        target_tool_id=b.id,
        weight=w,
        evidence=evidence,
    )


@pytest.fixture(scope="module")
def travel() -> tuple[ToolServer, list[Tool], list[ToolEdge]]:
    raw = next(
        s
        for s in json.loads(CATALOG.read_text())["servers"]
        if s["server_info"]["name"] == "travel-booking"
    )
    server = server_from_mcp("sample", raw)
    tools = [tool_from_mcp(server, t) for t in raw["tools"]]
    t = {tool.name: tool for tool in tools}
    flight = [("flights[].flight_id", "flight_id")]
    booking = [("booking_id", "booking_id")]
    edges = [
        _edge(server, t["search_flights"], t["get_flight_details"], flight),
        _edge(server, t["search_flights"], t["book_flight"], flight),
        _edge(server, t["get_flight_details"], t["book_flight"], [("flight_id", "flight_id")]),
        _edge(
            server, t["register_passenger"], t["book_flight"], [("passenger_id", "passenger_id")]
        ),
        _edge(server, t["book_flight"], t["get_booking"], booking),
        _edge(server, t["book_flight"], t["cancel_booking"], booking),
        _edge(server, t["get_booking"], t["cancel_booking"], booking),
    ]
    return server, tools, edges


@pytest.fixture(scope="module")
def synth(travel) -> OfflineSynthesizer:
    server, tools, edges = travel
    return OfflineSynthesizer([server], tools, edges)


def _chain(server: ToolServer, tools: list[Tool], names: list[str]) -> Chain:
    by_name = {t.name: t for t in tools}
    return Chain(
        server_id=server.id,
        tool_ids=[by_name[n].id for n in names],
        tool_names=names,
        length=len(names),
        seed=0,
        verdicts=[],
    )


def _task(synth: OfflineSynthesizer, travel, names: list[str], seed: int = 0) -> Task:
    server, tools, _ = travel
    chain = _chain(server, tools, names)
    query = synth.generate_queries(server, chain, tools, 1, seed)[0]
    return Task(server_id=server.id, chain_id=chain.id, query=query, parent_ids=[chain.id])


# -- chains ------------------------------------------------------------------------------------


def _planted() -> tuple[ToolServer, list[Tool], list[ToolEdge], set[tuple[str, str]]]:
    """A planted graph: a hub h feeding a..e (each needing h's ``h_id``), a -> b -> c by ids,
    and an orphan tool o. Every tool takes one id produced by its known predecessor."""
    server = ToolServer(
        source="t", name="planted", title="Planted", description="p", domain="x", tool_count=7
    )

    def tool(name: str, needs: str | None) -> Tool:
        props = {"note": {"type": "string", "description": "Free note"}}
        required = []
        if needs:
            props[needs] = {"type": "string", "description": "Identifier of a thing"}
            required = [needs]
        return Tool(
            server_id=server.id,
            name=name,
            description=f"Handle the {name} step of the planted workflow.",
            parameters={"type": "object", "properties": props, "required": required},
            output_schema={"type": "object", "properties": {f"{name}_id": {"type": "string"}}},
            domain="x",
            source_format="openai",
        )

    tools = {
        "h": tool("h", None),
        "a": tool("a", "h_id"),
        "b": tool("b", "a_id"),
        "c": tool("c", "b_id"),
        "d": tool("d", "h_id"),
        "e": tool("e", "h_id"),
        "o": tool("o", "zz_id"),
    }
    pairs = [("h", "a"), ("a", "b"), ("b", "c"), ("h", "d"), ("h", "e")]
    edges = [
        _edge(server, tools[s], tools[d], [(f"{s}_id", f"{s}_id")], w=0.5 + 0.1 * i)
        for i, (s, d) in enumerate(pairs)
    ]
    # an edge that exists but whose evidence maps nothing: d -> o never satisfies o's zz_id.
    edges.append(_edge(server, tools["d"], tools["o"], []))
    pair_ids = {(tools[s].id, tools[d].id) for s, d in [*pairs, ("d", "o")]}
    return server, list(tools.values()), edges, pair_ids


def test_walks_on_a_planted_graph_respect_lengths_edges_and_dedup() -> None:
    server, tools, edges, pair_ids = _planted()
    sample = sample_chains(server, tools, edges, n=50, min_len=2, max_len=4, seed=3, budget=400)
    chains = sample.chains
    assert chains
    assert len({c.id for c in chains}) == len(chains)
    assert len({tuple(c.tool_ids) for c in chains}) == len(chains)
    for chain in chains:
        assert 2 <= chain.length == len(chain.tool_ids) <= 4
        assert len(set(chain.tool_ids)) == chain.length
        for a, b in zip(chain.tool_ids, chain.tool_ids[1:], strict=False):
            assert (a, b) in pair_ids
        assert chain.verdicts[0].verifier == "satisfiability" and chain.verdicts[0].passed
        assert chain.tool_names[0] == "h"
    # the planted graph has exactly these satisfiable simple paths of 2..4 tools
    expected = {("h", "a"), ("h", "d"), ("h", "e"), ("h", "a", "b"), ("h", "a", "b", "c")}
    assert {tuple(c.tool_names) for c in chains} == expected
    stats = sample.stats
    assert stats.kept == len(chains) == 5
    assert stats.attempts == stats.kept + sum(stats.dropped.values())
    assert stats.dropped["unsatisfiable"] > 0  # walks from a, b or d -> o
    assert stats.coverage(len(tools)) == 6 / 7  # every tool but the unsatisfiable orphan


def test_walks_favour_under_covered_tools() -> None:
    server = ToolServer(
        source="t", name="star", title="Star", description="s", domain="x", tool_count=9
    )
    hub = Tool(
        server_id=server.id,
        name="hub",
        description="The hub of a star graph.",
        parameters={"type": "object", "properties": {}},
        domain="x",
        source_format="openai",
    )
    leaves = [
        Tool(
            server_id=server.id,
            name=f"leaf{i}",
            description=f"Leaf number {i} of the star.",
            parameters={"type": "object", "properties": {}},
            domain="x",
            source_format="openai",
        )
        for i in range(8)
    ]
    # one heavy edge (weight 8) and seven light ones (weight 1): plain weighted walks would
    # visit leaf0 in half the walks; the coverage term spreads them out.
    edges = [
        _edge(server, hub, leaf, [], w=8.0 if i == 0 else 1.0) for i, leaf in enumerate(leaves)
    ]
    sample = sample_chains(
        server, [hub, *leaves], edges, n=8, min_len=2, max_len=2, seed=1, budget=40
    )
    assert sample.stats.coverage(9) == 1.0
    assert len(sample.chains) == 8
    assert sample.stats.attempts <= 30


def test_satisfiability_rejects_an_id_without_producer(travel) -> None:
    _server, tools, edges = travel
    by_name = {t.name: t for t in tools}
    ok = check_satisfiability([by_name[n] for n in TRAVEL_CHAIN], edges)
    assert ok.passed is True
    # book_flight needs passenger_id; nothing before it in this chain produces one
    bad = check_satisfiability(
        [by_name["search_flights"], by_name["book_flight"], by_name["cancel_booking"]], edges
    )
    assert bad.passed is False and "book_flight.passenger_id" in bad.detail
    assert check_satisfiability([by_name["get_booking"]], edges).passed is False


def test_sampling_inserts_producers_and_finds_the_travel_chain(travel) -> None:
    server, tools, edges = travel
    sample = sample_chains(server, tools, edges, n=10, seed=0)
    names = [c.tool_names for c in sample.chains]
    assert TRAVEL_CHAIN in names
    assert sample.stats.coverage(len(tools)) == 1.0
    assert sample.stats.producers_inserted > 0
    for chain in sample.chains:
        steps = [next(t for t in tools if t.id == i) for i in chain.tool_ids]
        assert check_satisfiability(steps, edges).passed
    again = sample_chains(server, tools, list(reversed(edges)), n=10, seed=0)
    assert [c.id for c in again.chains] == [c.id for c in sample.chains]
    other = sample_chains(server, tools, edges, n=10, seed=1)
    assert [c.id for c in other.chains] != [c.id for c in sample.chains]


def test_enumerate_paths_counts_every_simple_path_and_stops_at_budget() -> None:
    complete = nx.complete_graph(6, create_using=nx.DiGraph)
    # simple paths with 2..4 nodes in K6: 6*5 + 6*5*4 + 6*5*4*3 = 510
    full = enumerate_paths(complete, 4)
    assert full.complete and full.count == 510
    capped = enumerate_paths(complete, 4, budget_count=100)
    assert not capped.complete and capped.count == 100
    _, tools, edges, _ = _planted()
    assert enumerate_paths(build_graph(tools, edges), 4).count == 10


# -- tasks -------------------------------------------------------------------------------------


def test_queries_name_no_tool_and_carry_every_sampled_value(synth, travel) -> None:
    server, tools, _ = travel
    chain = _chain(server, tools, TRAVEL_CHAIN)
    queries = synth.generate_queries(server, chain, tools, 5, seed=7)
    assert len(queries) == 5 and len(set(queries)) == 5
    for query in queries:
        assert names_tools(query, tools) == []
        parsed = parse_query(query, tools)
        assert [t.name for t in parsed.steps] == TRAVEL_CHAIN
        for param in ("origin", "destination", "departure_date", "first_name", "email"):
            assert f"{param.replace('_', ' ')}: {parsed.values[param]}" in query
        assert "flight_id" not in parsed.values and "passenger_id" not in parsed.values
        assert parsed.values["origin"] != parsed.values["destination"]
        task = Task(server_id=server.id, chain_id=chain.id, query=query)
        scores = synth.score_task(task, chain, tools, seed=0)
        assert [s.criterion for s in scores] == [
            "query_quality",
            "scenario_realism",
            "tool_use_necessity",
        ]
        assert all(s.status == JudgeStatus.OK and s.score == 5.0 for s in scores)
    assert synth.generate_queries(server, chain, tools, 5, seed=7) == queries
    assert synth.generate_queries(server, chain, tools, 5, seed=8) != queries


def test_rubric_penalises_a_tool_name_and_missing_values(synth, travel) -> None:
    server, tools, _ = travel
    chain = _chain(server, tools, TRAVEL_CHAIN)
    task = _task(synth, travel, TRAVEL_CHAIN)
    named = task.model_copy(update={"query": task.query + " Use search_flights please."})
    stripped = task.model_copy(update={"query": task.query.split(" — ")[0]})
    quality = {s.criterion: s.score for s in synth.score_task(named, chain, tools, 0)}
    assert quality["query_quality"] == 3.0
    poor = {s.criterion: s.score for s in synth.score_task(stripped, chain, tools, 0)}
    assert poor["query_quality"] == 1.0 and poor["tool_use_necessity"] < 5.0
    scores = synth.score_task(stripped, chain, tools, 0)
    assert not passes_rubric(scores, {"query_quality": 4})


def test_augmentations_keep_the_chain_and_change_what_they_should(synth, travel) -> None:
    _server, tools, _ = travel
    task = _task(synth, travel, TRAVEL_CHAIN)
    original = parse_query(task.query, tools)
    results = {k: synth.augment(task, k, seed=2) for k in ("diverse", "complicate", "persona")}
    for kind, new in results.items():
        assert new is not None and new.augmentation == kind and new.parent_ids == [task.id]
        assert names_tools(new.query, tools) == []
        assert parse_query(new.query, tools).steps == original.steps
    assert parse_query(results["diverse"].query, tools).values != original.values
    assert parse_query(results["complicate"].query, tools).values == original.values
    assert results["persona"].persona and results["persona"].persona in results["persona"].query
    unknown = task.model_copy(update={"server_id": "srv-unknown"})
    assert synth.augment(unknown, "diverse", seed=2) is None


def test_offline_backend_gives_only_satisfiability_verdicts(synth, travel) -> None:
    server, tools, _ = travel
    verdicts = synth.verify_chain(_chain(server, tools, TRAVEL_CHAIN), tools, seed=0)
    assert [(v.verifier, v.passed) for v in verdicts] == [("satisfiability", True)]
    backend: Synthesizer = synth  # the offline backend satisfies the protocol statically
    assert backend.name == "offline@1"


# -- agent loop --------------------------------------------------------------------------------


def _tool_calls(trajectory: Trajectory) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for m in trajectory.messages for c in m.tool_calls]


def test_oracle_follows_the_travel_chain_with_returned_ids(synth, travel) -> None:
    server, tools, _ = travel
    task = _task(synth, travel, TRAVEL_CHAIN)
    values = parse_query(task.query, tools).values
    trajectory = run_agent(task, tools, synth, OfflineSimulator(), seed=0)
    assert trajectory.status == "completed"
    assert trajectory.parent_ids == [task.id] and trajectory.agent_model == "offline@1"
    assert trajectory.executor == "offline_simulator"
    calls = _tool_calls(trajectory)
    assert [name for name, _ in calls] == TRAVEL_CHAIN
    assert trajectory.n_tool_calls == 5 and trajectory.n_turns == 6
    outputs = [json.loads(m.content) for m in trajectory.messages if m.role == "tool"]
    assert calls[0][1]["origin"] == values["origin"]
    assert calls[0][1]["departure_date"] == values["departure_date"]
    assert calls[1][1]["flight_id"] == outputs[0]["flights"][0]["flight_id"]
    assert calls[2][1]["email"] == values["email"]
    assert calls[3][1]["flight_id"] == outputs[1]["flight_id"]
    assert calls[3][1]["passenger_id"] == outputs[2]["passenger_id"]
    assert calls[4][1]["booking_id"] == outputs[3]["booking_id"]
    assert outputs[4]["booking_id"] in trajectory.final_answer
    assert [m.role for m in trajectory.messages[:2]] == ["system", "user"]
    rewards = score_trajectory(trajectory, tools, _chain(server, tools, TRAVEL_CHAIN))
    assert {r.dimension for r in rewards} == set(REGISTRY)
    assert all(r.status == JudgeStatus.OK and r.score == 1.0 for r in rewards)
    assert all(r.judge_model == "rule" and r.prompt_version == "1" for r in rewards)


def test_simulator_is_consistent_with_history(synth, travel) -> None:
    _server, tools, _edges = travel
    names = ["search_flights", "register_passenger", "book_flight", "get_booking"]
    task = _task(synth, travel, names)
    trajectory = run_agent(task, tools, synth, OfflineSimulator(), seed=0)
    calls = _tool_calls(trajectory)
    assert [n for n, _ in calls] == names
    outputs = [json.loads(m.content) for m in trajectory.messages if m.role == "tool"]
    booked, looked_up = calls[2][1], outputs[3]
    assert looked_up["flight_id"] == booked["flight_id"]
    assert looked_up["passenger_id"] == booked["passenger_id"]
    by_name = {t.name: t for t in tools}
    sim = OfflineSimulator()
    args = json.dumps(calls[1][1])
    first = sim.execute(by_name["register_passenger"], args, [], seed=1)
    assert first == sim.execute(by_name["register_passenger"], args, trajectory.messages, seed=9)
    bad = sim.execute(by_name["book_flight"], '{"flight_id": "F"}', [], seed=0)
    assert not bad.ok and "passenger_id" in bad.content


def test_injected_failures_at_rate_one(synth, travel) -> None:
    server, tools, _ = travel
    task = _task(synth, travel, TRAVEL_CHAIN)
    trajectory = run_agent(task, tools, synth, OfflineSimulator(), seed=0, failure_rate=1.0)
    assert trajectory.status == "completed"
    assert trajectory.n_tool_calls == 2  # the first step, retried once
    assert all(json.loads(m.content)["error"] for m in trajectory.messages if m.role == "tool")
    assert trajectory.final_answer and "could not finish" in trajectory.final_answer
    rewards = {
        r.dimension: r
        for r in score_trajectory(trajectory, tools, _chain(server, tools, TRAVEL_CHAIN))
    }
    assert rewards["tool_call_success"].score == 0.0
    assert rewards["conciseness"].score == 1.0  # a retry after a failure is not redundant
    assert rewards["chain_coverage"].score == 0.0
    grounded = rewards["final_answer_grounded"]
    assert grounded.status == JudgeStatus.MISSING and grounded.score is None
    # At a 30% rate, about 30% of all calls over many seeds fail (per-seed counts vary).
    runs = [
        run_agent(task, tools, synth, OfflineSimulator(), seed=s, failure_rate=0.3)
        for s in range(30)
    ]
    results = [m for t in runs for m in t.messages if m.role == "tool"]
    failed = sum(1 for m in results if "error" in json.loads(m.content))
    assert 0.15 <= failed / len(results) <= 0.45


def test_turn_limit(synth, travel) -> None:
    task = _task(synth, travel, TRAVEL_CHAIN)
    _, tools, _ = travel
    trajectory = run_agent(task, tools, synth, OfflineSimulator(), seed=0, max_turns=3)
    assert trajectory.status == "turn_limit" and trajectory.n_turns == 3
    assert trajectory.final_answer is None


def test_trajectories_are_deterministic(synth, travel) -> None:
    _, tools, _ = travel
    task = _task(synth, travel, TRAVEL_CHAIN)
    a = run_agent(task, tools, synth, OfflineSimulator(), seed=4, failure_rate=0.3)
    b = run_agent(task, tools, synth, OfflineSimulator(), seed=4, failure_rate=0.3)
    assert a == b and a.id == b.id
    other_task = _task(synth, travel, TRAVEL_CHAIN, seed=5)
    c = run_agent(other_task, tools, synth, OfflineSimulator(), seed=5, failure_rate=0.3)
    assert _tool_calls(c)[0][1] != _tool_calls(a)[0][1]


@pytest.mark.slow
def test_sandbox_executor_runs_tool_code(synth, travel) -> None:
    _server, tools, _ = travel
    by_name = {t.name: t for t in tools}
    code = {
        "search_flights": (
            "def search_flights(origin, destination, departure_date, **kw):\n"
            "    return {'flights': [{'flight_id': 'FX-' + origin + destination,"
            " 'price_eur': 99.0}]}\n"
        ),
        "get_flight_details": (
            "def get_flight_details(flight_id):\n"
            "    return {'flight_id': flight_id, 'seats_left': 3}\n"
        ),
    }
    names = ["search_flights", "get_flight_details"]
    task = _task(synth, travel, names)
    executor = SandboxExecutor(code)
    trajectory = run_agent(task, [by_name[n] for n in names], synth, executor, seed=0)
    assert trajectory.executor == "sandbox" and trajectory.status == "completed"
    values = parse_query(task.query, tools).values
    expected = f"FX-{values['origin']}{values['destination']}"
    assert _tool_calls(trajectory)[1][1] == {"flight_id": expected}
    assert expected in (trajectory.final_answer or "")
    missing = executor.execute(by_name["book_flight"], "{}", [], seed=0)
    assert not missing.ok and "NoCode" in missing.content


# -- rewards and SFT ---------------------------------------------------------------------------


def test_weights_are_checked_against_the_registry() -> None:
    with pytest.raises(ValueError, match="unknown reward 'style'"):
        check_weights({"style": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        check_weights({"conciseness": -1.0})
    assert check_weights({"conciseness": 1.0}) == {"conciseness": 1.0}


def test_sft_selection_threshold_and_split(synth, travel) -> None:
    server, tools, _ = travel
    chain = _chain(server, tools, TRAVEL_CHAIN)
    trajectories = []
    for seed in range(12):
        task = _task(synth, travel, TRAVEL_CHAIN, seed=seed)
        rate = 1.0 if seed % 3 == 0 else 0.0
        trajectories.append(
            run_agent(task, tools, synth, OfflineSimulator(), seed=seed, failure_rate=rate)
        )
    rewards = [r for t in trajectories for r in score_trajectory(t, tools, chain)]
    means = Counter(
        round(mean_reward([r for r in rewards if r.target_id == t.id]), 2) for t in trajectories
    )
    assert means == {1.0: 8, 0.4: 4}  # failed: 1 + 0 + 1 + missing(0) + 0 over 5
    examples = select_sft(trajectories, rewards, tools, threshold=0.9, eval_fraction=0.25, seed=0)
    assert len(examples) == 8
    assert {e.trajectory_id for e in examples} == {
        t.id for i, t in enumerate(trajectories) if i % 3
    }
    assert all(e.reward == 1.0 and e.domain == "travel" for e in examples)
    assert [f.name for f in examples[0].tools] == [t.name for t in tools]
    again = select_sft(
        list(reversed(trajectories)), rewards, tools, threshold=0.9, eval_fraction=0.25, seed=0
    )
    assert {e.id: e.split for e in again} == {e.id: e.split for e in examples}
    everything = select_sft(trajectories, rewards, tools, threshold=0.0, eval_fraction=1.0, seed=0)
    assert len(everything) == 12 and {e.split for e in everything} == {"eval"}
    none = select_sft(trajectories, rewards, tools, threshold=0.9, eval_fraction=0.0, seed=0)
    assert {e.split for e in none} == {"train"}
    limited = trajectories[1].model_copy(update={"status": "turn_limit"})
    assert select_sft([limited], rewards, tools, threshold=0.0, eval_fraction=0.0, seed=0) == []


@pytest.mark.parametrize(
    "module",
    [chains_module, tasks_module, agent_module, offline_module, rewards_module, sft_module],
)
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_a_large_server_offers_the_chain_its_neighbours_and_a_bounded_rest() -> None:
    from jobs.synth.agent import offered_tools
    from schemas import Tool, ToolEdge

    tools = [
        Tool(server_id="s", name=f"tool_{i:02d}", description="d", domain="d",
             source_format="mcp", parameters={"type": "object"})
        for i in range(40)
    ]  # fmt: skip
    chain = [tools[5].id, tools[6].id, tools[7].id]
    edges = [
        ToolEdge(server_id="s", source_tool_id=tools[7].id, target_tool_id=tools[30].id,
                 weight=0.9, evidence=[]),
        ToolEdge(server_id="s", source_tool_id=tools[31].id, target_tool_id=tools[5].id,
                 weight=0.8, evidence=[]),
    ]  # fmt: skip
    offered = offered_tools(chain, tools, edges, limit=16, seed=3)
    ids = {t.id for t in offered}
    assert len(offered) == 16 and set(chain) <= ids
    assert {tools[30].id, tools[31].id} <= ids  # graph neighbours come before the rest
    assert [t.name for t in offered] == sorted(t.name for t in offered)
    assert offered == offered_tools(chain, tools, edges, limit=16, seed=3)
    assert offered != offered_tools(chain, tools, edges, limit=16, seed=4)
    assert len(offered_tools(chain, tools, edges, limit=0, seed=3)) == 40
