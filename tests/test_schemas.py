"""Schemas: Arrow schemas from models, stable ids, MCP conversion, upcasting, events."""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import pytest

from lake.views import TableView
from schemas import DATA_TABLES, Message, Tool, ToolServer, Trajectory
from schemas.base import Row
from schemas.events import RunStarted, TableVersion, from_record, to_record
from schemas.tools import SchemaConversionError, server_from_mcp, tool_from_mcp


def test_every_table_has_an_arrow_schema_with_provenance() -> None:
    for name, model in DATA_TABLES.items():
        schema = model.arrow_schema()
        assert schema.names[:4] == ["id", "run_id", "parent_ids", "schema_version"], name
        assert not schema.field("id").nullable


def test_messages_are_nested_structs() -> None:
    messages = Trajectory.arrow_schema().field("messages").type
    assert pa.types.is_list(messages)
    fields = {f.name for f in messages.value_type}
    assert fields == {"role", "content", "tool_calls", "tool_call_id", "name"}


def test_the_same_tool_ingested_twice_is_the_same_row(sample_catalog: dict) -> None:
    entry = sample_catalog["servers"][0]
    a = tool_from_mcp(server_from_mcp("cat", entry), entry["tools"][0], run_id="run-a")
    b = tool_from_mcp(server_from_mcp("cat", entry), entry["tools"][0], run_id="run-b")
    assert a.id == b.id and a.run_id != b.run_id
    changed = {**entry["tools"][0], "description": "A different description of this tool."}
    assert tool_from_mcp(server_from_mcp("cat", entry), changed).id != a.id


def test_mcp_tool_becomes_an_openai_function(sample_catalog: dict) -> None:
    entry = sample_catalog["servers"][0]
    tool = tool_from_mcp(server_from_mcp("cat", entry), entry["tools"][0])
    function = tool.to_openai_function()
    assert function["type"] == "function"
    assert function["function"]["parameters"]["type"] == "object"
    assert set(function["function"]["parameters"]["required"]) <= set(
        function["function"]["parameters"]["properties"]
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"description": "long enough text"}, "tool name None is missing"),
        (
            {
                "name": "f",
                "description": "long enough text",
                "inputSchema": {"type": "object", "properties": {"x": "string"}},
            },
            "parameters.x is not a JSON-schema object",
        ),
        (
            {"name": "f", "description": "long enough text", "inputSchema": {"type": "array"}},
            "type 'object'",
        ),
        (
            {
                "name": "f",
                "description": "long enough text",
                "inputSchema": {"type": "object", "properties": {"x": {"type": "strng"}}},
            },
            "unknown type 'strng'",
        ),
    ],
)
def test_malformed_mcp_tools_are_refused_with_reasons(raw: dict, reason: str) -> None:
    server = ToolServer(source="s", name="n", title="t", description="d", domain="x", tool_count=1)
    with pytest.raises(SchemaConversionError, match=reason):
        tool_from_mcp(server, raw)


class ServerV2(Row):
    """A test model: version 2 of a table that split ``title`` out of ``name``."""

    TABLE: ClassVar[str] = "tool_servers"
    ID_PREFIX: ClassVar[str] = "srv"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("name",)
    SCHEMA_VERSION: ClassVar[int] = 2
    UPCASTS: ClassVar[dict[int, Any]] = {
        1: lambda r: {
            **{k: v for k, v in r.items() if k != "label"},
            "name": r["label"].split(":")[0],
            "title": r["label"].split(":")[1],
        },
    }

    name: str
    title: str


class ServerV1(Row):
    TABLE: ClassVar[str] = "tool_servers"
    ID_PREFIX: ClassVar[str] = "srv"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("label",)

    label: str


def test_old_rows_are_upcast_on_read(tmp_path) -> None:
    import lance

    old = ServerV1.to_arrow([ServerV1(label="weather:Weather"), ServerV1(label="bank:Bank")])
    dataset = lance.write_dataset(old, str(tmp_path / "t.lance"))
    view = TableView(table="tool_servers", version=1, model=ServerV2, dataset=dataset)
    rows = view.to_arrow().to_pylist()
    assert [(r["name"], r["title"], r["schema_version"]) for r in rows] == [
        ("weather", "Weather", 2),
        ("bank", "Bank", 2),
    ]


def test_upcast_without_a_step_says_which_is_missing() -> None:
    class NoSteps(ServerV2):
        SCHEMA_VERSION: ClassVar[int] = 3

    with pytest.raises(ValueError, match=r"add UPCASTS\[2\]"):
        NoSteps.upcast({"schema_version": 2, "name": "x", "title": "y"})


def test_events_round_trip_through_records() -> None:
    event = RunStarted(
        run_id="run-1",
        job="ingest-catalog",
        params={"source": "x"},
        seed=3,
        code_version="ingest-catalog@1",
        inputs=(TableVersion("tools", 4),),
        run_key="key-1",
    )
    assert from_record(to_record(event, 12)) == event


def test_a_row_model_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError):
        Message(role="user", content="hi", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Tool(
            server_id="s", name="f", description="d", parameters={}, domain="x", source_format="xml"
        )  # type: ignore[arg-type]
