"""Each graph signal on a planted catalog whose edges are known exactly, and each penalty.

Every test builds a tiny server, runs the matcher with the signal on and with it off, and
checks the exact edge set: the signal must add precisely the planted dependency, nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobs.graph import GraphParams, server_edges, server_graph
from jobs.graph_signals import SIGNALS, CatalogModel, Signals, infer_outputs
from schemas import Tool

SERVER = "srv-000000000000000000000002"


def tool(
    name: str,
    description: str,
    params: dict[str, dict[str, Any]],
    output: dict[str, Any] | None = None,
    required: list[str] | None = None,
) -> Tool:
    return Tool(
        server_id=SERVER,
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": params,
            "required": sorted(params) if required is None else required,
        },
        output_schema=output,
        domain="planted",
        source_format="mcp",
    )


def obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def s(kind: str, description: str = "") -> dict[str, Any]:
    return {"type": kind, "description": description}


def pairs(tools: list[Tool], *, without: tuple[str, ...] = (), min_score: float = 0.6) -> set:
    signals = Signals(frozenset(SIGNALS) - set(without))
    return {(e.source.name, e.target.name) for e in server_edges(tools, min_score, signals)}


def evidence(tools: list[Tool], source: str, target: str) -> list[tuple[str, str, str]]:
    for edge in server_edges(tools, 0.0):
        if (edge.source.name, edge.target.name) == (source, target):
            return [(m.source_field, m.target_param, m.kind) for m in edge.matches]
    return []


def test_affix_links_role_and_qualifier_affixed_names() -> None:
    """``pick_up_latitude`` <- ``latitude``, ``fromId``/``toId`` <- a location's ``id``,
    ``place_id`` <- ``googlePlaceId``; an unrelated ``transaction_id`` stays unlinked."""
    tools = [
        tool(
            "search_locations",
            "Search locations by text",
            {"text": s("string", "Free text")},
            obj(
                locations={
                    "type": "array",
                    "items": obj(
                        id=s("string", "Location id"),
                        latitude=s("number", "Latitude of the location"),
                        googlePlaceId=s("string", "Google place id of the location"),
                    ),
                }
            ),
        ),
        tool(
            "book_ride",
            "Book a ride",
            {
                "pick_up_latitude": s("number", "Latitude to pick the rider up"),
                "pick_up_place_id": s("string", "Place id to pick the rider up"),
            },
            obj(transaction_id=s("string", "Payment transaction")),
        ),
        tool(
            "plan_route",
            "Plan a route between two locations",
            {"fromId": s("string", "Start location"), "toId": s("string", "End location")},
        ),
    ]
    assert pairs(tools) == {("search_locations", "book_ride"), ("search_locations", "plan_route")}
    # "Latitude to pick the rider up" names the field too (the described signal)
    assert pairs(tools, without=("affix",)) == {("search_locations", "book_ride")}
    assert pairs(tools, without=("affix", "described", "semantic")) == set()
    assert set(evidence(tools, "search_locations", "book_ride")) == {
        ("locations[].googlePlaceId", "pick_up_place_id", "affix"),
        ("locations[].latitude", "pick_up_latitude", "affix"),
    }
    assert {p for _, p, _ in evidence(tools, "search_locations", "plan_route")} == {
        "fromId",
        "toId",
    }


def test_top_level_id_is_qualified_by_the_tools_entity() -> None:
    """``create_ticket`` returns a bare ``id``: it is the ticket's id, so it feeds
    ``ticket_id``; the same ``id`` from ``get_ticket(ticket_id)`` is an echo."""
    tools = [
        tool(
            "create_ticket", "Create a support ticket", {"title": s("string")}, obj(id=s("integer"))
        ),
        tool(
            "get_ticket",
            "Get a ticket",
            {"ticket_id": s("integer", "Ticket to read")},
            obj(id=s("integer"), status=s("string")),
        ),
        tool("close_ticket", "Close a ticket", {"ticket_id": s("integer", "Ticket to close")}),
    ]
    assert pairs(tools) == {("create_ticket", "get_ticket"), ("create_ticket", "close_ticket")}
    assert pairs(tools, without=("penalties",)) == {
        ("create_ticket", "get_ticket"),
        ("create_ticket", "close_ticket"),
        ("get_ticket", "close_ticket"),
    }


def test_described_links_names_found_in_descriptions() -> None:
    """``receiver_id`` is described as "User ID of the user ...": ``user_id`` feeds it; a list
    described as "List of stock symbols" feeds ``symbol``."""
    tools = [
        tool("get_user_id", "Look a user up", {"user": s("string", "User name")},
             obj(user_id=s("string", "Identifier of the user"))),
        tool("send_message", "Send a message",
             {"receiver_id": s("string", "User ID of the user to send the message to")}),
        tool("get_watchlist", "The watchlist", {},
             obj(watchlist={"type": "array", "items": {"type": "string"},
                            "description": "List of stock symbols in the watchlist"})),
        tool("get_stock_info", "Quote a stock",
             {"symbol": s("string", "Ticker that identifies the stock")}),
    ]  # fmt: skip
    assert pairs(tools) == {("get_user_id", "send_message"), ("get_watchlist", "get_stock_info")}
    assert pairs(tools, without=("described",)) == set()


def test_producer_named_in_a_parameter_description() -> None:
    tools = [
        tool("searchAirport", "Find airports by name", {"query": s("string", "Airport name")}),
        tool(
            "searchFlights",
            "Search flights between two airports",
            {"originSkyId": s("string", "Origin airport id; can be retrieved from Search Airport")},
        ),
    ]
    found = pairs(tools, without=("inferred", "semantic"))
    assert found == {("searchAirport", "searchFlights")}
    assert pairs(tools, without=("inferred", "semantic", "producer_named")) == set()
    kinds = {k for _, _, k in evidence(tools, "searchAirport", "searchFlights")}
    assert "producer_named" in kinds


def test_outputs_are_inferred_for_schema_less_tools() -> None:
    """tau2-retail's shape: no tool declares an output. Finding a user gives its id; a user's
    details "including their orders" give order ids; an order's record holds what the tools
    about orders take besides its id (its items, its payment method)."""
    tools = [
        tool("find_user_id_by_email", "Find user id by email.", {"email": s("string")}),
        tool("get_user_details", "Get the details of a user, including their orders.",
             {"user_id": s("string", "The user id")}),
        tool("get_order_details", "Get the status and details of an order.",
             {"order_id": s("string", "The order id")}),
        tool("return_order_items", "Return items of a delivered order.",
             {"order_id": s("string", "The order id"),
              "item_ids": {"type": "array", "items": {"type": "string"}},
              "payment_method_id": s("string", "Where the refund goes")}),
    ]  # fmt: skip
    # return_order_items changes an order, so it hands back the order's record (its user)
    assert pairs(tools) == {
        ("find_user_id_by_email", "get_user_details"),
        ("get_user_details", "get_order_details"),
        ("get_user_details", "return_order_items"),
        ("get_order_details", "get_user_details"),
        ("get_order_details", "return_order_items"),
        ("return_order_items", "get_user_details"),
    }
    assert pairs(tools, without=("inferred",)) == set()
    model = CatalogModel.of(tools)
    details = infer_outputs(tools[2], model)
    assert {f.name for f in details} == {"user_id", "item_id", "payment_method_id"}
    assert all(f.inferred for f in details)
    graph = server_graph(tools, None, GraphParams(), seed=0)
    assert all("inferred output" in e.detail for row in graph.edges for e in row.evidence)


def test_optional_parameters_match_at_a_lower_score() -> None:
    tools = [
        tool("list_projects", "List projects", {}, obj(project_id=s("string", "Project"))),
        tool("list_tasks", "List tasks", {"project_id": s("string", "Only this project")},
             required=[]),
    ]  # fmt: skip
    assert pairs(tools) == {("list_projects", "list_tasks")}
    assert pairs(tools, without=("optional",)) == set()
    [edge] = server_edges(tools, 0.6)
    # exact name, same type, "project" shared by both descriptions: 1.0, then x0.85
    assert edge.weight == pytest.approx(0.85)


def test_id_types_let_number_ids_feed_string_ids() -> None:
    tools = [
        tool("create_invoice", "Create an invoice", {}, obj(invoice_id=s("integer"))),
        tool("send_invoice", "Send an invoice", {"invoice_id": s("string", "Invoice")}),
    ]
    assert pairs(tools) == {("create_invoice", "send_invoice")}
    assert pairs(tools, without=("id_types",)) == set()


def test_self_edges_come_from_cursors_not_echoes() -> None:
    tools = [
        tool(
            "list_files",
            "List files page by page",
            {"cursor": s("string", "Cursor of the page to continue from"), "folder": s("string")},
            obj(next_cursor=s("string", "Cursor of the next page"), folder=s("string")),
            required=["folder"],
        )
    ]
    assert pairs(tools) == {("list_files", "list_files")}
    assert evidence(tools, "list_files", "list_files") == [("next_cursor", "cursor", "affix")]
    assert pairs(tools, without=("self",)) == set()


def test_generic_name_only_matches_are_penalised() -> None:
    """``name`` -> ``name`` says nothing about which thing it names."""
    tools = [
        tool("get_city", "Get a city", {"city_id": s("string")}, obj(name=s("string"))),
        tool("rename_file", "Rename a file", {"name": s("string")}),
    ]
    assert pairs(tools) == set()
    assert pairs(tools, without=("penalties",)) == {("get_city", "rename_file")}


def test_echo_edges_are_penalised() -> None:
    """A ticket that hands back the ``origin`` it was given produces no origin."""
    tools = [
        tool("book_ticket", "Book a ticket", {"origin": s("string", "From")},
             obj(origin=s("string", "From"), ticket_id=s("string"))),
        tool("search_trains", "Search trains", {"origin": s("string", "From")}),
    ]  # fmt: skip
    assert pairs(tools) == set()
    assert pairs(tools, without=("penalties",)) == {("book_ticket", "search_trains")}


def test_reversed_pairs_keep_the_stronger_direction_stronger() -> None:
    tools = [
        tool("get_user", "Get a user", {"user_id": s("string", "User")},
             obj(order_id=s("string", "The user's last order"))),
        tool("get_order", "Get an order", {"order_id": s("string", "The user's last order")},
             obj(user_id=s("string"))),
    ]  # fmt: skip
    edges = {(e.source.name, e.target.name): e.weight for e in server_edges(tools, 0.0)}
    plain = {
        (e.source.name, e.target.name): e.weight
        for e in server_edges(tools, 0.0, Signals(frozenset(SIGNALS) - {"penalties"}))
    }
    assert edges["get_user", "get_order"] == plain["get_user", "get_order"]
    assert edges["get_order", "get_user"] == pytest.approx(0.85 * plain["get_order", "get_user"])


def test_semantic_similarity_links_synonyms() -> None:
    """``postal_code`` and ``postcode`` share no word (as names); the embedding model knows
    they mean one thing. Without the signal the pair is not linked."""
    tools = [
        tool("lookup_address", "Look an address up", {"query": s("string", "Street address")},
             obj(postal_code=s("string", "Postal code of the address"))),
        tool("get_weather", "Weather at a place", {"postcode": s("string", "the postal code")}),
    ]  # fmt: skip
    # "the postal code" also names the field (the described signal): take it away first
    assert pairs(tools, without=("described",)) == {("lookup_address", "get_weather")}
    assert pairs(tools, without=("described", "semantic")) == set()
    signals = Signals(frozenset(SIGNALS) - {"described"})
    [edge] = server_edges(tools, 0.6, signals)
    assert [m.kind for m in edge.matches] == ["semantic"]


def test_combinator_outputs_are_visible_and_error_branches_are_not() -> None:
    tools = [
        tool("find_user", "Find a user", {"email": s("string")},
             {"oneOf": [obj(user_id=s("string", "The user")),
                        {"type": "object", "title": "Error", "properties": {
                            "error": s("string"), "code": s("string")}}]}),
        tool("get_user", "Get a user", {"user_id": s("string", "The user")}),
        tool("explain_error", "Explain an error code", {"code": s("string", "Error code")}),
    ]  # fmt: skip
    assert pairs(tools) == {("find_user", "get_user")}


def test_unknown_signal_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown graph signals"):
        GraphParams(signals=("schema", "telepathy"))  # type: ignore[arg-type]


def test_tau2_tools_without_output_schemas_give_satisfiable_chains() -> None:
    """tau2-bench's retail tools as shipped (no output schemas): the graph links them and the
    chain sampler finds chains whose every required argument has a producer or comes from the
    user, including the gold path email -> user id -> user details -> order details."""
    from benchmarks.graph_gold import catalog_document
    from jobs.synth.chains import sample_chains
    from schemas.formats import Origin, convert

    _, converted = convert(
        catalog_document("tau2-retail"),
        "auto",
        Origin(source="tau2", name="tau2", where="tau2", server_name=None, domain=None),
    )
    [server] = converted.servers
    tools = converted.tools
    assert tools and not any(t.output_schema for t in tools)
    rows = server_graph(tools, server, GraphParams(), seed=0).edges
    names = {t.id: t.name for t in tools}
    linked = {(names[e.source_tool_id], names[e.target_tool_id]) for e in rows}
    assert {
        ("find_user_id_by_email", "get_user_details"),
        ("get_user_details", "get_order_details"),
    } <= linked
    sample = sample_chains(server, tools, rows, n=12, seed=0)
    assert len(sample.chains) >= 6
    assert all(c.verdicts[0].passed for c in sample.chains)
