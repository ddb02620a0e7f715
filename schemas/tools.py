"""Tool servers and tools. The canonical tool form is the OpenAI function-calling schema.

Converters take MCP tool lists (``inputSchema``/``outputSchema``) and OpenAI function lists;
anything that cannot be turned into a valid OpenAI function raises
:class:`SchemaConversionError` with the reason, so callers can quarantine it.
:func:`tool_from_function` is the one gate every other input format (OpenAPI, BFCL,
ToolUniverse, see :mod:`schemas.formats`) goes through once it has a name, a description, an
input schema and maybe an output schema.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from schemas.base import Json, Row

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})

SourceFormat = Literal["mcp", "openai", "openapi", "bfcl", "tooluniverse"]


class SchemaConversionError(ValueError):
    """A tool schema that cannot be converted to the OpenAI function format."""


class ToolServer(Row):
    TABLE: ClassVar[str] = "tool_servers"
    ID_PREFIX: ClassVar[str] = "srv"
    ID_FIELDS: ClassVar[tuple[str, ...]] = ("source", "name")

    source: str
    name: str
    title: str
    description: str
    domain: str
    language: str = "en"
    tool_count: int


class Tool(Row):
    TABLE: ClassVar[str] = "tools"
    ID_PREFIX: ClassVar[str] = "tool"
    ID_FIELDS: ClassVar[tuple[str, ...]] = (
        "server_id",
        "name",
        "description",
        "parameters",
        "output_schema",
    )

    server_id: str
    name: str
    description: str
    parameters: Json
    output_schema: Json | None = None
    domain: str
    source_format: SourceFormat

    def to_openai_function(self) -> dict[str, Any]:
        """The tool as an entry of the OpenAI ``tools`` list.

        >>> t = Tool(server_id="srv-1", name="f", description="d", domain="x",
        ...          source_format="openai", parameters={"type": "object", "properties": {}})
        >>> t.to_openai_function()["function"]["name"]
        'f'
        """
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _check_property(tool: str, path: str, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise SchemaConversionError(f"{tool}: {path} is not a JSON-schema object")
    kinds = schema.get("type")
    if kinds is None:
        if not any(k in schema for k in ("enum", "anyOf", "oneOf", "allOf", "$ref", "const")):
            raise SchemaConversionError(f"{tool}: {path} has no 'type'")
        return
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind not in JSON_TYPES:
            raise SchemaConversionError(f"{tool}: {path} has unknown type {kind!r}")
    if kinds == "array" and "items" in schema:
        _check_property(tool, f"{path}.items", schema["items"])
    if kinds == "object":
        for key, sub in (schema.get("properties") or {}).items():
            _check_property(tool, f"{path}.{key}", sub)


def normalize_parameters(tool: str, schema: Any) -> dict[str, Any]:
    """Validate an input JSON schema and return it in OpenAI's shape (an object schema).

    >>> normalize_parameters("f", None)
    {'type': 'object', 'properties': {}, 'required': []}
    >>> normalize_parameters("f", {"type": "object", "properties": {"x": {}}})
    Traceback (most recent call last):
    ...
    schemas.tools.SchemaConversionError: f: parameters.x has no 'type'
    """
    if schema is None or schema == {}:
        return {"type": "object", "properties": {}, "required": []}
    if not isinstance(schema, dict):
        raise SchemaConversionError(f"{tool}: parameters must be a JSON object, got {schema!r}")
    if schema.get("type", "object") != "object":
        raise SchemaConversionError(f"{tool}: parameters must have type 'object'")
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        raise SchemaConversionError(f"{tool}: parameters.properties must be an object")
    for key, sub in properties.items():
        _check_property(tool, f"parameters.{key}", sub)
    required = schema.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaConversionError(f"{tool}: parameters.required must be a list of names")
    missing = [r for r in required if r not in properties]
    if missing:
        raise SchemaConversionError(f"{tool}: required parameters {missing} are not defined")
    return {**schema, "type": "object", "properties": properties, "required": required}


def _check_name_and_description(name: Any, description: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise SchemaConversionError(
            f"tool name {name!r} is not a valid function name (letters, digits, _ or -, 1-64)"
        )
    if not isinstance(description, str) or len(description.strip()) < 8:
        raise SchemaConversionError(f"{name}: description is missing or too vague")
    return name, description.strip()


def tool_from_mcp(server: ToolServer, raw: Any, run_id: str | None = None) -> Tool:
    """Convert one MCP tool (``name``, ``description``, ``inputSchema``, ``outputSchema``)."""
    if not isinstance(raw, dict):
        raise SchemaConversionError(f"tool entry is not an object: {raw!r:.80}")
    name, description = _check_name_and_description(raw.get("name"), raw.get("description"))
    output = raw.get("outputSchema")
    if output is not None:
        _check_property(name, "outputSchema", output)
    return Tool(
        server_id=server.id,
        name=name,
        description=description,
        parameters=normalize_parameters(name, raw.get("inputSchema")),
        output_schema=output,
        domain=server.domain,
        source_format="mcp",
        run_id=run_id,
        parent_ids=[server.id],
    )


def tool_from_openai(server: ToolServer, raw: Any, run_id: str | None = None) -> Tool:
    """Convert one OpenAI tools-list entry (``{"type": "function", "function": {...}}``)."""
    if not isinstance(raw, dict):
        raise SchemaConversionError(f"tool entry is not an object: {raw!r:.80}")
    function = raw.get("function", raw)
    if not isinstance(function, dict):
        raise SchemaConversionError("'function' must be an object")
    name, description = _check_name_and_description(
        function.get("name"), function.get("description")
    )
    return Tool(
        server_id=server.id,
        name=name,
        description=description,
        parameters=normalize_parameters(name, function.get("parameters")),
        output_schema=None,
        domain=server.domain,
        source_format="openai",
        run_id=run_id,
        parent_ids=[server.id],
    )


def tool_from_function(
    server: ToolServer,
    *,
    name: Any,
    description: Any,
    parameters: Any,
    output_schema: Any,
    source_format: SourceFormat,
    run_id: str | None = None,
) -> Tool:
    """Validate one function (name, description, input schema, optional output schema).

    >>> srv = ToolServer(source="s", name="n", title="t", description="", domain="d",
    ...                  tool_count=1)
    >>> tool_from_function(srv, name="get_user", description="Fetch one user by id",
    ...     parameters={"type": "object", "properties": {"id": {"type": "string"}}},
    ...     output_schema=None, source_format="openapi").parameters["required"]
    []
    """
    name, description = _check_name_and_description(name, description)
    if output_schema is not None:
        _check_property(name, "output_schema", output_schema)
    return Tool(
        server_id=server.id,
        name=name,
        description=description,
        parameters=normalize_parameters(name, parameters),
        output_schema=output_schema,
        domain=server.domain,
        source_format=source_format,
        run_id=run_id,
        parent_ids=[server.id],
    )


def server_from_mcp(source: str, raw: Any, run_id: str | None = None) -> ToolServer:
    """The server row of one MCP catalog entry (``server_info`` plus ``tools``)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("server_info"), dict):
        raise SchemaConversionError("server entry needs a 'server_info' object")
    info = raw["server_info"]
    tools = raw.get("tools")
    if not isinstance(tools, list):
        raise SchemaConversionError(f"server {info.get('name')!r} has no 'tools' list")
    name = info.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaConversionError("server_info.name is missing")
    return ToolServer(
        source=source,
        name=name,
        title=str(info.get("title") or name),
        description=str(info.get("description") or ""),
        domain=str(info.get("domain") or "general"),
        language=str(info.get("language") or "en"),
        tool_count=len(tools),
        run_id=run_id,
    )
