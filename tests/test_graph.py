"""The tool graph: the pure schema matcher on planted and shipped catalogs, then the Spark job."""

from __future__ import annotations

import doctest
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobs.graph
import jobs.spark
from jobs.graph import BuildToolGraph, GraphParams, server_edges
from jobs.graph_signals import LEGACY_SIGNALS, Signals
from jobs.ingest import IngestCatalog, IngestParams
from jobs.runner import run_job
from jobs.spark import SparkConfig, SparkSessionFactory
from lake import Lake
from schemas import Tool, ToolEdge
from schemas.tools import server_from_mcp, tool_from_mcp

SERVER = "srv-000000000000000000000001"


def _tool(name: str, required: dict[str, Any], output: dict[str, Any] | None) -> Tool:
    return Tool(
        server_id=SERVER,
        name=name,
        description=f"{name.replace('_', ' ')} for the planted shop",
        parameters={"type": "object", "properties": required, "required": sorted(required)},
        output_schema=output,
        domain="shop",
        source_format="mcp",
    )


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def _s(kind: str, description: str = "") -> dict[str, Any]:
    return {"type": kind, "description": description}


@pytest.fixture(scope="module")
def planted() -> dict[str, Tool]:
    """Five tools whose edges are known exactly.

    create_order -> get_order, create_order -> pay_order (``order.id`` is ``order_id``),
    get_order -> pay_order (``order_id``), count_items -> pay_order (integer ``amount`` into a
    number). Not edges: pay_order -> send_receipt (``receipt_id`` is a string, the parameter an
    integer), get_order -> get_order (self), anything by partial names (``transaction_id``).
    """
    tools = [
        _tool(
            "create_order",
            {"customer_name": _s("string", "Name of the buyer")},
            _obj(
                order=_obj(id=_s("string", "Identifier of the new order")),
                transaction_id=_s("string", "Identifier of the payment transaction"),
            ),
        ),
        _tool(
            "get_order",
            {"order_id": _s("string", "Identifier of the order")},
            _obj(order_id=_s("string", "Identifier of the order"), status=_s("string")),
        ),
        _tool(
            "pay_order",
            {
                "order_id": _s("string", "Identifier of the order to pay"),
                "amount": _s("number", "Amount to pay"),
            },
            _obj(receipt_id=_s("string", "Identifier of the receipt")),
        ),
        _tool(
            "count_items",
            {},
            _obj(
                items=_s("array", "Items of the basket"),
                amount=_s("integer", "Amount due, in cents"),
            ),
        ),
        _tool(
            "send_receipt",
            {
                "receipt_id": _s("integer", "Number of the receipt"),
                "email": _s("string", "Where to send it"),
            },
            None,
        ),
    ]
    return {t.name: t for t in tools}


@pytest.mark.parametrize("module", [jobs.graph, jobs.spark])
def test_doctests(module: object) -> None:
    outcome = doctest.testmod(module)  # type: ignore[arg-type]
    assert outcome.attempted > 0
    assert outcome.failed == 0


def test_planted_catalog_gives_exactly_the_known_edges(planted: dict[str, Tool]) -> None:
    """The first-built graph (typed schema matching alone) on the planted catalog."""
    edges = server_edges(list(planted.values()), 0.6, Signals(frozenset(LEGACY_SIGNALS)))
    found = {(e.source.name, e.target.name) for e in edges}
    assert found == {
        ("create_order", "get_order"),
        ("create_order", "pay_order"),
        ("get_order", "pay_order"),
        ("count_items", "pay_order"),
    }
    by_pair = {(e.source.name, e.target.name): e for e in edges}
    qualified = by_pair["create_order", "get_order"].matches
    assert [(m.source_field, m.target_param) for m in qualified] == [("order.id", "order_id")]
    assert "qualified" in qualified[0].detail
    numeric = by_pair["count_items", "pay_order"].matches
    assert [(m.source_field, m.target_param) for m in numeric] == [("amount", "amount")]
    assert "integer->number 1.0" in numeric[0].detail
    for edge in edges:
        row = edge.to_row()
        assert 0.0 < row.weight <= 1.0
        assert row.weight == max(e.score for e in row.evidence)
        assert all(e.kind == "schema_match" for e in row.evidence)
        assert row.parent_ids == [edge.source.id, edge.target.id]
        assert row.source_tool_id != row.target_tool_id


def test_every_signal_on_the_planted_catalog(planted: dict[str, Tool]) -> None:
    """With every signal: ``receipt_id`` (a string) now fits the integer ``receipt_id`` (ids
    are ids, whatever their JSON type), and ``get_order`` merely echoes the ``order_id`` it
    was given, so that edge is cut below the threshold."""
    edges = server_edges(list(planted.values()), 0.6)
    by_pair = {(e.source.name, e.target.name): e for e in edges}
    assert set(by_pair) == {
        ("create_order", "get_order"),
        ("create_order", "pay_order"),
        ("count_items", "pay_order"),
        ("pay_order", "send_receipt"),
    }
    receipt = by_pair["pay_order", "send_receipt"].matches
    assert [(m.source_field, m.target_param) for m in receipt] == [("receipt_id", "receipt_id")]
    assert "string->integer 0.75" in receipt[0].detail
    echo = server_edges(list(planted.values()), 0.0)
    echoed = {(e.source.name, e.target.name): e for e in echo}["get_order", "pay_order"]
    assert any("echo of its own input" in m.detail for m in echoed.matches)


def test_min_score_prunes_weak_matches(planted: dict[str, Tool]) -> None:
    strong = server_edges(list(planted.values()), min_score=0.95)
    assert all(e.weight >= 0.95 for e in strong)
    assert len(strong) < len(server_edges(list(planted.values()), min_score=0.6))
    assert server_edges(list(planted.values()), min_score=1.01) == []


def _sample_tools(sample_catalog: dict) -> dict[str, list[Tool]]:
    servers: dict[str, list[Tool]] = {}
    for entry in sample_catalog["servers"]:
        server = server_from_mcp("astra-sample", entry)
        servers[server.name] = [tool_from_mcp(server, raw) for raw in entry["tools"]]
    return servers


KNOWN_CHAINS = [
    ("travel-booking", "search_flights", "get_flight_details", "flight_id"),
    ("travel-booking", "register_passenger", "book_flight", "passenger_id"),
    ("travel-booking", "book_flight", "cancel_booking", "booking_id"),
    ("retail-banking", "list_accounts", "get_account_balance", "account_id"),
    ("retail-banking", "add_payee", "transfer_funds", "payee_id"),
    ("weather-geo", "geocode_place", "get_forecast", "latitude"),
    ("weather-geo", "geocode_place", "get_forecast", "longitude"),
    ("clinic-appointments", "search_doctors", "get_available_slots", "doctor_id"),
]


def test_shipped_catalog_has_the_known_chains(sample_catalog: dict) -> None:
    servers = _sample_tools(sample_catalog)
    edges = {
        name: {(e.source.name, e.target.name): e for e in server_edges(tools, 0.6)}
        for name, tools in servers.items()
    }
    for server, source, target, param in KNOWN_CHAINS:
        edge = edges[server].get((source, target))
        assert edge is not None, f"{server}: no edge {source} -> {target}"
        assert param in {m.target_param for m in edge.matches}
    for server_edges_ in edges.values():
        for edge in server_edges_.values():
            assert edge.source.server_id == edge.target.server_id
            if edge.source.id == edge.target.id:
                # a refinement (search again under max_stops from the results' stops), never
                # the tool's own input handed back
                assert all(m.source_field.split(".")[-1] != m.target_param for m in edge.matches)
    refine = edges["travel-booking"]["search_flights", "search_flights"].matches
    assert [(m.source_field, m.target_param) for m in refine] == [("flights[].stops", "max_stops")]


# -- the Spark job ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_factory() -> Iterator[SparkSessionFactory]:
    factory = SparkSessionFactory(SparkConfig(master="local[2]", python=sys.executable))
    yield factory
    factory.stop()


def _ingested(root: Path) -> Lake:
    lake = Lake(root)
    run_job(lake, IngestCatalog(IngestParams()))
    return lake


@pytest.mark.slow
def test_graph_job_on_spark_end_to_end(tmp_path: Path, spark_factory: SparkSessionFactory) -> None:
    lake = _ingested(tmp_path / "lake")
    job = BuildToolGraph(GraphParams(min_score=0.6))
    result = run_job(lake, job, spark_factory=spark_factory)
    assert not result.reused
    commit = result.run.commit_for("tool_edges")
    assert commit is not None
    stored = lake.read("tool_edges").to_arrow()
    assert commit.rows_written == stored.num_rows == result.kept["tool_edges"]

    tools = [Tool.from_record(r) for r in lake.read("tools").to_arrow().to_pylist()]
    by_server: dict[str, list[Tool]] = {}
    for tool in tools:
        by_server.setdefault(tool.server_id, []).append(tool)
    expected = {
        e.to_row().id: e.to_row() for group in by_server.values() for e in server_edges(group, 0.6)
    }
    rows = {r["id"]: ToolEdge.from_record(r) for r in stored.to_pylist()}
    assert set(rows) == set(expected)
    for edge_id, row in rows.items():
        assert row.run_id == result.run.run_id
        assert row.model_copy(update={"run_id": None}) == expected[edge_id]

    names = {t.id: t.name for t in tools}
    pairs = {(names[r.source_tool_id], names[r.target_tool_id]) for r in rows.values()}
    for _, source, target, _ in KNOWN_CHAINS:
        assert (source, target) in pairs

    again = run_job(lake, job, spark_factory=spark_factory)
    assert again.reused
    assert again.run.run_id == result.run.run_id
    assert lake.read("tool_edges").version == commit.version

    fresh = _ingested(tmp_path / "fresh")
    replayed = run_job(fresh, job, spark_factory=spark_factory)
    replayed_commit = replayed.run.commit_for("tool_edges")
    assert replayed_commit is not None
    assert replayed.run.run_id != result.run.run_id
    assert replayed_commit.content_hash == commit.content_hash
    assert fresh.read("tool_edges").content_hash() == lake.read("tool_edges").content_hash()


class _EveryParam(dict):  # type: ignore[type-arg]
    """A parameter index that offers every parameter for any key: matching by brute force."""

    def __init__(self, everything: list[Any]) -> None:
        super().__init__()
        self.everything = everything

    def get(self, key: Any, default: Any = None) -> list[Any]:
        return self.everything


def test_indexed_matching_finds_exactly_the_pairwise_edges(
    sample_catalog: dict, planted: dict[str, Tool]
) -> None:
    """Name signals look candidates up in a word-tail index; checking every (field, parameter)
    pair must give the same edges."""
    from jobs.graph_signals import ServerMatcher

    names_only = Signals(frozenset(LEGACY_SIGNALS) | {"affix", "optional", "id_types", "self"})
    groups = [*_sample_tools(sample_catalog).values(), list(planted.values())]
    for group in groups:
        indexed = ServerMatcher(group, names_only)
        brute = ServerMatcher(group, names_only)
        every = [(t, p) for t, side in enumerate(brute.sides) for p in side.params]
        brute._param_indexes = lambda every=every: (_EveryParam(every), _EveryParam(every))  # type: ignore[method-assign]
        assert indexed.edges(0.5) == brute.edges(0.5)
        assert indexed.edges(0.5)
