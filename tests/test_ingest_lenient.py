"""Ingest keeps what is usable: one leniency (or one remaining rule) per test, on real samples.

Samples (tests/data/lenient, sources in its README): ToolUniverse tools with untyped output
properties, a ``oneOf`` output and ``$defs`` parameters; BFCL function docs with dotted names
and an empty type; a tau2-bench airline tool with pydantic ``$defs`` in and out. Cases no real
catalog at hand shows (recursion, a missing ``$ref`` target, CJK names) are written here.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

from jobs.export import export_jsonl, sft_rows
from jobs.ingest import IngestCatalog, IngestParams
from jobs.params import ParamsError, parse_params
from jobs.runner import run_job
from jobs.synth.sft import function_specs
from lake import Lake, SchemaMismatchError
from schemas import Message, SFTExample, Tool, ToolCall, Trajectory, canonical_json
from schemas.base import Json, Row
from schemas.formats import Origin, convert, parse_document
from schemas.tools import description_quality, function_alias

DATA = Path(__file__).resolve().parent / "data" / "lenient"
SAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "samples"
TOOLUNIVERSE = DATA / "tooluniverse_tools.json"
BFCL = DATA / "bfcl_functions.jsonl"
TAU2 = DATA / "tau2_airline.json"


def ingest(lake: Lake, source: Path | str, **params: Any):
    return run_job(lake, IngestCatalog(IngestParams(source=str(source), **params)))


def rows(lake: Lake, table: str) -> list[dict[str, Any]]:
    return lake.read(table).to_arrow().to_pylist()


def converted(document: Any, fmt: str = "auto", **origin: Any):
    _, out = convert(document, fmt, Origin(source="s", name="doc", where="doc", **origin))  # type: ignore[arg-type]
    return out


def shipped(path: Path) -> list[dict[str, Any]]:
    return parse_document(path.read_text(), path.suffix)


def by_name(path: Path) -> dict[str, Tool]:
    return {t.name: t for t in converted(shipped(path)).tools}


def openai_tool(name: str, parameters: Any, description: str = "A tool for the tests") -> dict:
    function = {"name": name, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


# -- untyped schemas ---------------------------------------------------------------------------


def test_untyped_output_properties_accept_any_value() -> None:
    source = {t["name"]: t for t in shipped(TOOLUNIVERSE)}
    tools = by_name(TOOLUNIVERSE)
    for name in ("VSDQuerySource", "ORCID_get_profile"):  # rejected before: "has no 'type'"
        assert tools[name].output_schema == source[name]["return_schema"]
    assert tools["VSDQuerySource"].output_schema["properties"]["result"] == {}


def test_an_empty_bfcl_type_name_leaves_the_parameter_untyped() -> None:
    auth = by_name(BFCL)["createAuthToken"]
    issuer = auth.parameters["properties"]["options"]["properties"]["issuer"]
    assert issuer == {"description": "The entity that issued the token."}


def test_unknown_type_names_still_reject_with_the_path() -> None:
    out = converted([openai_tool("f", {"type": "object", "properties": {"n": {"type": "int"}}})])
    assert [r.reason for r in out.rejected] == [
        "unconvertible_tool: f: parameters.n has unknown type 'int'",
        "no_valid_tools: every tool was rejected",
    ]


def test_parameters_that_are_not_an_object_schema_still_reject() -> None:
    out = converted([openai_tool("f", {"type": "array", "items": {"type": "string"}})])
    assert out.rejected[0].reason == "unconvertible_tool: f: parameters must have type 'object'"


def test_required_names_that_are_not_defined_are_dropped_with_a_comment() -> None:
    schema = {"type": "object", "properties": {"value": {"type": "number"}}}
    tool = converted([openai_tool("f", {**schema, "required": ["value", "scale"]})]).tools[0]
    assert tool.parameters["required"] == ["value"]
    assert "['scale']" in tool.parameters["$comment"]


# -- combinators and references -----------------------------------------------------------------


def test_combinator_output_schemas_are_kept_intact() -> None:
    source = {t["name"]: t for t in shipped(TOOLUNIVERSE)}
    orthologs = by_name(TOOLUNIVERSE)["RGD_get_orthologs"]
    assert orthologs.output_schema == source["RGD_get_orthologs"]["return_schema"]
    assert set(orthologs.output_schema) == {"oneOf"}


def test_defs_refs_in_tooluniverse_parameters_are_inlined() -> None:
    raw = next(t for t in shipped(TOOLUNIVERSE) if t["name"] == "Boltz_estimate_adme_cost")
    tool = by_name(TOOLUNIVERSE)["Boltz_estimate_adme_cost"]
    stored = canonical_json(tool.parameters)
    assert '"$ref"' in json.dumps(raw["parameter"]) and '"$ref"' not in stored
    assert "$defs" not in tool.parameters
    ligand = raw["parameter"]["$defs"]
    assert any(canonical_json(d) in stored for d in ligand.values() if "$ref" not in json.dumps(d))


def test_defs_refs_in_mcp_input_and_output_schemas_are_inlined() -> None:
    entry = json.loads(TAU2.read_text())["servers"][0]["tools"][0]
    tool = converted(json.loads(TAU2.read_text())).tools[0]
    passenger = entry["inputSchema"]["$defs"]["Passenger"]
    assert tool.parameters["properties"]["passengers"]["items"]["anyOf"][0] == passenger
    returns = tool.output_schema["properties"]["returns"]
    assert returns["description"] == "The updated reservation."  # the $ref's sibling kept
    assert returns["title"] == "Reservation" and "$ref" not in canonical_json(tool.output_schema)
    assert "$defs" not in tool.parameters and "$defs" not in tool.output_schema


def test_recursive_refs_are_cut_one_level_down_with_a_comment() -> None:
    node = {"type": "object", "properties": {"children": {"type": "array", "items": {}}}}
    node["properties"]["children"]["items"] = {"$ref": "#/$defs/Node"}
    schema = {"type": "object", "properties": {"root": {"$ref": "#/$defs/Node"}}}
    tool = converted([openai_tool("tree", {**schema, "$defs": {"Node": node}})]).tools[0]
    children = tool.parameters["properties"]["root"]["properties"]["children"]["items"]
    assert children == {"type": "object", "$comment": "recursive $ref #/$defs/Node not expanded"}


def test_an_unresolvable_ref_leaves_the_property_untyped_with_a_comment() -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": "#/$defs/Gone", "title": "X"}}}
    tool = converted([openai_tool("f", schema)]).tools[0]
    assert tool.parameters["properties"]["x"] == {
        "title": "X",
        "$comment": "unknown $ref '#/$defs/Gone'; any JSON value accepted",
    }


# -- names --------------------------------------------------------------------------------------


def test_dotted_names_get_aliases_and_keep_their_original() -> None:
    tools = converted(shipped(BFCL)).tools
    assert [(t.name, t.original_name) for t in tools] == [
        ("math_gcd", "math.gcd"),
        ("number_analysis_prime_factors", "number_analysis.prime_factors"),
        ("math_hcf", "math.hcf"),
        ("createAuthToken", None),
    ]


def test_aliases_are_unique_within_a_server_whatever_the_order() -> None:
    params = {"type": "object", "properties": {}}
    entries = [openai_tool("a.b", params, "The dotted one"), openai_tool("a_b", params)]
    forward = {t.original_name: t.name for t in converted(entries).tools}
    backward = {t.original_name: t.name for t in converted(entries[::-1]).tools}
    assert forward == backward == {"a.b": "a_b_2", None: "a_b"}


def test_non_ascii_and_long_names_get_stable_hashed_aliases() -> None:
    recipes = function_alias("获取所有菜谱")
    assert recipes == function_alias("获取所有菜谱") == "tool_13f3d3d4"
    first, second = function_alias("x" * 70 + "1"), function_alias("x" * 70 + "2")
    assert len(first) == len(second) == 64 and first != second
    assert function_alias("Café.Crème") == "Cafe_Creme"  # accents dropped, nothing lost
    stem, digest = function_alias("Größe.berechnen").rsplit("_", 1)
    assert stem == "Gro_e_berechnen" and len(digest) == 8  # ß is lost: hashed


def test_server_names_with_dots_are_kept(lake: Lake) -> None:
    result = ingest(lake, TAU2)
    assert result.kept == {"tool_servers": 1, "tools": 1}
    assert [s["name"] for s in rows(lake, "tool_servers")] == ["tau2.airline"]


def test_valid_tools_keep_the_ids_they_had() -> None:
    document = json.loads((SAMPLES / "tool_catalog.json").read_text())
    _, out = convert(
        document, "auto", Origin(source="s", name="tool_catalog", where="tool_catalog.json")
    )
    tool = next(t for t in out.tools if t.name == "search_flights")
    assert tool.id == "tool-7b0b2db70ff950d08ea61243"  # its id before aliases existed


# -- descriptions -------------------------------------------------------------------------------


def test_a_six_character_cjk_description_is_ok() -> None:
    tool = converted([openai_tool("recipes", None, "获取所有菜谱")]).tools[0]
    assert (tool.description, tool.description_quality) == ("获取所有菜谱", "ok")


def test_a_short_description_is_kept_and_marked() -> None:
    tool = converted([openai_tool("list_units", None, "tbd")]).tools[0]
    assert (tool.description, tool.description_quality) == ("tbd", "short")
    assert description_quality("Get weather") == "short"


def test_a_missing_description_is_derived_from_the_name_and_schema() -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "check_in": {"type": "string"}},
        "required": ["city", "check_in"],
    }
    tool = converted([openai_tool("SearchHotel", parameters, "")]).tools[0]
    assert tool.description == "Search hotel. Takes: city (string), check_in (string)."
    assert tool.description_quality == "derived"


# -- sources and size ---------------------------------------------------------------------------


def test_gzip_files_are_read_alone_and_in_a_directory(lake: Lake, tmp_path: Path) -> None:
    tree = tmp_path / "catalogs"
    tree.mkdir()
    (tree / "bfcl_functions.jsonl.gz").write_bytes(gzip.compress(BFCL.read_bytes()))
    (tree / "tau2_airline.json.gz").write_bytes(gzip.compress(TAU2.read_bytes()))
    shutil.copy(TOOLUNIVERSE, tree / "tooluniverse_tools.json")
    result = ingest(lake, tree)
    assert result.kept == {"tool_servers": 3, "tools": 9} and result.dropped == {}
    names = {s["name"] for s in rows(lake, "tool_servers")}
    assert names == {"bfcl_functions", "tau2.airline", "tooluniverse_tools"}
    alone = ingest(lake, tree / "bfcl_functions.jsonl.gz", server_name=None)
    assert not alone.reused and alone.kept == {"tool_servers": 1, "tools": 4}


def test_a_broken_gzip_file_in_a_directory_is_quarantined(lake: Lake, tmp_path: Path) -> None:
    tree = tmp_path / "catalogs"
    tree.mkdir()
    shutil.copy(BFCL, tree / "bfcl_functions.jsonl")
    (tree / "zz.json.gz").write_bytes(b"not gzip at all")
    result = ingest(lake, tree)
    assert result.kept == {"tool_servers": 1, "tools": 4}
    assert result.dropped == {"unreadable_file": 1}
    assert "is not valid gzip" in rows(lake, "rejects")[0]["reason"]


def test_text_over_the_cap_is_rejected_with_its_size(lake: Lake) -> None:
    boltz = by_name(TOOLUNIVERSE)["Boltz_estimate_adme_cost"]
    size = len(canonical_json(boltz.parameters).encode())
    assert 900 < size < 1000
    result = ingest(lake, TOOLUNIVERSE, max_text_bytes=900)
    assert result.kept["tools"] == 3 and result.dropped == {"text_too_large": 1}
    assert [r["reason"] for r in rows(lake, "rejects")] == [
        f"text_too_large: Boltz_estimate_adme_cost: parameters is {size:,} bytes, "
        "over max_text_bytes=900"
    ]


def test_max_text_bytes_must_be_positive() -> None:
    with pytest.raises(ParamsError, match=r"max_text_bytes=0: must be a positive number"):
        parse_params(IngestParams, ["max_text_bytes=0"])
    assert IngestParams().max_text_bytes == 65536


# -- schema version -----------------------------------------------------------------------------


class ToolV1(Row):
    """The tools table as schema version 1 wrote it (no original_name, description_quality)."""

    TABLE: ClassVar[str] = "tools"
    ID_PREFIX: ClassVar[str] = "tool"
    ID_FIELDS: ClassVar[tuple[str, ...]] = Tool.ID_FIELDS

    server_id: str
    name: str
    description: str
    parameters: Json
    output_schema: Json | None = None
    domain: str
    source_format: str


def test_an_old_tools_table_is_upcast_on_read_and_migrates(lake: Lake, monkeypatch) -> None:
    import schemas

    old = [
        ToolV1(
            server_id="srv-1",
            name=name,
            description=description,
            parameters={"type": "object", "properties": {}, "required": []},
            domain="travel",
            source_format="mcp",
        )
        for name, description in (("search", "Search hotels by city"), ("ping", "Ping it"))
    ]
    monkeypatch.setitem(schemas.DATA_TABLES, "tools", ToolV1)
    lake.append("tools", ToolV1.to_arrow(old))
    monkeypatch.setitem(schemas.DATA_TABLES, "tools", Tool)
    read = {r["name"]: r for r in rows(lake, "tools")}
    assert {n: (r["original_name"], r["description_quality"]) for n, r in read.items()} == {
        "search": (None, "ok"),
        "ping": (None, "short"),
    }
    assert {r["id"] for r in read.values()} == {t.id for t in old}  # ids unchanged
    with pytest.raises(SchemaMismatchError, match="astra lake migrate tools"):
        ingest(lake, TAU2)
    lake.migrate("tools")
    assert ingest(lake, TAU2).kept["tools"] == 1
    assert lake.read("tools").count_rows() == 3


# -- export -------------------------------------------------------------------------------------

HOTELS = [
    {
        "type": "function",
        "function": {
            "name": "Hotels.SearchHotel",
            "description": "Search hotels in a city for the given dates",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "check_in": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_hotel",
            "description": "Book one hotel room by hotel id",
            "parameters": {"type": "object", "properties": {"hotel_id": {"type": "string"}}},
        },
    },
]


def sft_lake(lake: Lake, tmp_path: Path) -> None:
    """Ingest the hotels catalog and add one trajectory calling the alias and its example."""
    (tmp_path / "hotels.json").write_text(json.dumps(HOTELS))
    ingest(lake, tmp_path / "hotels.json")
    tools = sorted((Tool.from_record(r) for r in rows(lake, "tools")), key=lambda t: t.name)
    search = next(t for t in tools if t.original_name == "Hotels.SearchHotel")
    call = ToolCall(id="c1", name=search.name, arguments='{"city": "Rome"}')
    trajectory = Trajectory(
        task_id="task-1",
        tool_ids=[t.id for t in tools],
        messages=[
            Message(role="user", content="Find me a hotel in Rome."),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="c1", name=search.name, content='{"hotels": []}'),
            Message(role="assistant", content="No hotels are free."),
        ],
        agent_model="tiny",
        executor="offline_simulator",
        seed=1,
        n_turns=2,
        n_tool_calls=1,
        status="completed",
    )
    example = SFTExample(
        trajectory_id=trajectory.id,
        domain="general",
        messages=trajectory.messages,
        tools=function_specs(tools),
        reward=1.0,
        split="train",
    )
    lake.append("trajectories", Trajectory.to_arrow([trajectory]))
    lake.append("sft_examples", SFTExample.to_arrow([example]))


def test_export_restores_the_original_names_of_aliased_tools(lake: Lake, tmp_path: Path) -> None:
    sft_lake(lake, tmp_path)
    stored = {t["name"]: t["original_name"] for t in rows(lake, "tools")}
    assert stored == {"Hotels_SearchHotel": "Hotels.SearchHotel", "book_hotel": None}
    path = export_jsonl(sft_rows(lake, None, "all"), tmp_path / "sft.jsonl")
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert [t["function"]["name"] for t in row["tools"]] == ["Hotels.SearchHotel", "book_hotel"]
    (call,) = row["messages"][1]["tool_calls"]
    assert call["function"]["name"] == "Hotels.SearchHotel"


def test_export_keeps_the_aliases_when_asked(lake: Lake, tmp_path: Path) -> None:
    sft_lake(lake, tmp_path)
    (row,) = sft_rows(lake, None, "all", restore_names=False)
    assert [t["function"]["name"] for t in row["tools"]] == ["Hotels_SearchHotel", "book_hotel"]
