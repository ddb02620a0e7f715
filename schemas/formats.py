"""Tool catalogs in five input formats, converted to canonical ``ToolServer`` and ``Tool`` rows.

Every converter takes one parsed document and returns a :class:`Converted`: the servers and
tools that normalised, and a :class:`Rejection` (table, payload, ``code: detail`` reason,
where) for every entry that did not. Nothing is dropped silently. Each tool then goes through
one gate, :func:`schemas.tools.tool_from_function`, whose module docstring has the rules every
format shares: what is kept (untyped sub-schemas as "any value", local ``$ref``s inlined,
combinator output schemas, names aliased to ``^[A-Za-z0-9_-]{1,64}$`` with ``original_name``
kept, short or missing descriptions marked in ``description_quality``) and what is rejected
(``unconvertible_tool``: parameters that are not an object schema, unknown type names,
sub-schemas that are not schemas; ``text_too_large``: a description or schema over
``Origin.max_text_bytes``). The formats and their own rules:

``mcp``
    ASTRA's server list: ``{"catalog": NAME, "servers": [{"server_info": {...}, "tools": [...]}]}``
    with MCP tools (``inputSchema``, ``outputSchema``). A server entry without ``server_info``,
    its ``name`` or a ``tools`` list is rejected (``unconvertible_server``).
``openai``
    A list of ``{"type": "function", "function": {...}}`` entries (or bare function objects), or
    ``{"tools": [...]}``. One server per document, named after the file (or a given name).
    (BFCL and ToolUniverse files also yield one server per file.)
``openapi``
    An OpenAPI 3.x spec. Each operation becomes a tool: its name is the ``operationId`` (or
    method and path) sanitised to ``^[A-Za-z0-9_-]{1,64}$`` (other characters become ``_``, cut
    to 64) and made unique within the spec, with the ``operationId`` kept as ``original_name``
    when it was not already valid; its description is the summary and description; its
    parameters are the path, query and header parameters (cookie parameters are not tool
    arguments) plus the request body (an object body's properties are flattened beside them,
    ``body_``-prefixed on a name clash, and are required only when the body is; any other body
    is one ``body`` argument); its output schema is the JSON schema of the 200 (else 201)
    response, or None. Local ``$ref``s are inlined by :class:`schemas.jsonschema.RefResolver`:
    a reference that recurses is cut to a shallow copy of its target marked with a
    ``$comment``; a schema reference that cannot be resolved (unknown, or in another file)
    becomes an untyped schema with a ``$comment``; a parameter, request body or response
    reference that cannot be resolved rejects the operation. A schema without a ``type`` gets
    ``object`` when it has ``properties`` and ``array`` when it has ``items``, and is left
    untyped (any JSON value) otherwise. The server is the spec's ``info`` (title,
    description); its domain is the first ``x-apisguru-categories`` entry when present.
``bfcl``
    Berkeley Function Calling Leaderboard function docs: JSON lines (or a JSON list) of
    ``{"name", "description", "parameters", "response"?}`` with BFCL's type names mapped to JSON
    schema (``dict``→object, ``float``→number, ``tuple``→array, ``any``→every JSON type, the
    Java and JavaScript names likewise; a list of ``items`` becomes ``prefixItems``).
    ``response`` becomes the output schema. BFCL's dotted names (``math.sum``) get aliases.
``tooluniverse``
    A ToolUniverse tool file: a JSON list of ``{"name", "type", "description", "parameter",
    "return_schema"}``; ``return_schema`` becomes the output schema. One server per file.

Aliases are unique within their server: the server's valid names are taken first, then each
alias in file order. A server whose every tool was rejected is rejected too
(``no_valid_tools``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import yaml

from schemas.jsonschema import RefResolver, SchemaConversionError
from schemas.tools import (
    DEFAULT_MAX_TEXT_BYTES,
    FUNCTION_NAME,
    Tool,
    ToolServer,
    sanitize_function_name,
    server_from_mcp,
    tool_from_function,
    tool_from_mcp,
    tool_from_openai,
    unique_name,
)

Format = Literal["mcp", "openai", "openapi", "bfcl", "tooluniverse"]
FORMATS: tuple[Format, ...] = get_args(Format)
DEFAULT_DOMAIN = "general"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PARAMETER_LOCATIONS = ("path", "query", "header")
SUCCESS_CODES = ("200", "201")
ALL_JSON_TYPES = ["string", "number", "integer", "boolean", "array", "object", "null"]
BFCL_TYPES: dict[str, str | None] = {
    "integer": "integer",
    "number": "number",
    "float": "number",
    "string": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "dict": "object",
    "object": "object",
    "tuple": "array",
    "any": None,
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "double": "number",
    "char": "string",
    "ArrayList": "array",
    "Array": "array",
    "HashMap": "object",
    "Hashtable": "object",
    "Queue": "array",
    "Stack": "array",
    "Any": None,
    "String": "string",
    "Bigint": "integer",
    "null": "null",
    "Boolean": "boolean",
    "Set": "array",
}
"""BFCL's type names (bfcl_eval.constants.type_mappings: GORILLA_TO_OPENAPI and the Java and
JavaScript conversions) to JSON-schema types; None is 'any'."""


class DocumentError(ValueError):
    """A file that cannot be parsed, or whose format cannot be told, as a whole."""


@dataclass(frozen=True)
class Rejection:
    """One entry that could not become a row: which table, the raw payload, why, and where."""

    table: Literal["tool_servers", "tools"]
    payload: Any
    reason: str
    where: str

    @property
    def code(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass
class Converted:
    servers: list[ToolServer] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class Origin:
    """Where a document came from and how to name what it yields."""

    source: str
    """Recorded as each server's ``source`` (the catalog name)."""
    name: str
    """Default server name (the file's stem) for formats without one."""
    where: str
    """Prefix of every rejection's location (the file's relative path)."""
    server_name: str | None = None
    """Overrides the server name of the openai, openapi, bfcl and tooluniverse formats."""
    domain: str | None = None
    """Overrides the domain every format would otherwise derive."""
    run_id: str | None = None
    max_text_bytes: int | None = DEFAULT_MAX_TEXT_BYTES
    """A tool whose description or schema is larger is rejected (``text_too_large``); None
    for no limit."""


# -- parsing and detection -------------------------------------------------------------------


def parse_document(text: str, suffix: str) -> Any:
    """Parse JSON, JSON lines (one object per line, as BFCL ships) or YAML (``.yaml``/``.yml``).

    >>> parse_document('{"a": 1}\\n{"a": 2}\\n', ".json")
    [{'a': 1}, {'a': 2}]
    """
    if suffix.lower() in (".yaml", ".yml"):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError as exc:
            raise DocumentError(f"is not valid YAML ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        lines = [line for line in text.splitlines() if line.strip()]
        if exc.msg == "Extra data" and len(lines) > 1:
            try:
                return [json.loads(line) for line in lines]
            except json.JSONDecodeError:
                pass
        raise DocumentError(
            f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _entries(document: Any) -> list[Any] | None:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("tools"), list):
        return document["tools"]
    return None


def _looks_openai(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    if entry.get("type") == "function" and isinstance(entry.get("function"), dict):
        return True
    params = entry.get("parameters")
    return "name" in entry and isinstance(params, dict) and params.get("type", "object") == "object"


def _looks_bfcl(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and "name" in entry
        and isinstance(entry.get("parameters"), dict)
        and entry["parameters"].get("type") == "dict"
    )


def _looks_tooluniverse(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and "name" in entry
        and isinstance(entry.get("type"), str)
        and entry.get("type") != "function"
        and ("parameter" in entry or "return_schema" in entry)
    )


def detect_format(document: Any) -> Format:
    """Tell the format of a parsed document from its content.

    >>> detect_format({"openapi": "3.0.0", "info": {}, "paths": {}})
    'openapi'
    >>> detect_format([{"name": "f", "parameters": {"type": "dict", "properties": {}}}])
    'bfcl'
    """
    if isinstance(document, dict):
        if "openapi" in document and "paths" in document:
            version = str(document["openapi"])
            if not version.startswith("3"):
                raise DocumentError(f"is OpenAPI {version}; only OpenAPI 3.x is supported")
            return "openapi"
        if "swagger" in document:
            raise DocumentError(
                f"is Swagger {document['swagger']}; convert it to OpenAPI 3 first "
                "(e.g. with swagger2openapi)"
            )
        servers = document.get("servers")
        if isinstance(servers, list) and not any(
            isinstance(s, dict) and "url" in s for s in servers
        ):
            return "mcp"
    entries = _entries(document)
    if entries:
        first = next((e for e in entries if isinstance(e, dict)), None)
        if _looks_bfcl(first):
            return "bfcl"
        if _looks_tooluniverse(first):
            return "tooluniverse"
        if _looks_openai(first):
            return "openai"
    raise DocumentError(
        "has a format that cannot be told: expected an OpenAPI 3 spec ('openapi' and 'paths'), "
        "an MCP catalog ('servers' of {'server_info', 'tools'}), an OpenAI tools list "
        "({'type': 'function', 'function': {...}}), BFCL function docs (parameters of type "
        "'dict') or a ToolUniverse tool list ('parameter', 'return_schema'); "
        "pass format=... to say which"
    )


# -- shared -------------------------------------------------------------------------------------


def _finish_server(
    out: Converted, server: ToolServer, tools: list[Tool], payload: Any, where: str, total: int
) -> None:
    """Keep a server with at least one good tool; reject it otherwise."""
    if not tools:
        detail = "every tool was rejected" if total else "the document has no tools"
        out.rejected.append(Rejection("tool_servers", payload, f"no_valid_tools: {detail}", where))
        return
    out.servers.append(server.model_copy(update={"tool_count": len(tools)}))
    out.tools.extend(tools)


def _simple_server(
    origin: Origin, name: str, title: str, description: str, domain: str, n: int
) -> ToolServer:
    return ToolServer(
        source=origin.source,
        name=name,
        title=title,
        description=description,
        domain=origin.domain or domain,
        tool_count=n,
        run_id=origin.run_id,
    )


def _entry_name(raw: Any) -> Any:
    """The name an entry gives its tool (an OpenAI entry's function name), if any."""
    if not isinstance(raw, dict):
        return None
    function = raw.get("function")
    return (function if isinstance(function, dict) else raw).get("name")


def _convert_tools(
    out: Converted,
    server: ToolServer,
    entries: list[Any],
    convert: Callable[[ToolServer, Any, set[str]], Tool],
    where: str,
) -> list[Tool]:
    """Convert a server's entries; rejections go to ``out``. Aliases are made unique among the
    server's valid names first, so they do not depend on where those stand in the file."""
    taken = {
        name
        for name in map(_entry_name, entries)
        if isinstance(name, str) and FUNCTION_NAME.match(name)
    }
    tools: list[Tool] = []
    for index, raw in enumerate(entries):
        try:
            tools.append(convert(server, raw, taken))
        except SchemaConversionError as exc:
            out.rejected.append(Rejection("tools", raw, f"{exc.code}: {exc}", f"{where}[{index}]"))
    return tools


def _convert_list(
    origin: Origin,
    entries: list[Any],
    server: ToolServer,
    convert: Callable[[ToolServer, Any, set[str]], Tool],
    payload: Any,
) -> Converted:
    out = Converted()
    tools = _convert_tools(out, server, entries, convert, origin.where)
    _finish_server(out, server, tools, payload, origin.where, len(entries))
    return out


# -- mcp and openai ----------------------------------------------------------------------------


def convert_mcp(document: Any, origin: Origin) -> Converted:
    """ASTRA's MCP server list; ``origin.source`` names the catalog."""
    if not isinstance(document, dict) or not isinstance(document.get("servers"), list):
        raise DocumentError(
            "must be a JSON object with a 'servers' list of "
            "{'server_info': {...}, 'tools': [...]} entries"
        )
    out = Converted()
    for index, entry in enumerate(document["servers"]):
        where = f"{origin.where}#servers[{index}]"
        try:
            server = server_from_mcp(origin.source, entry, run_id=origin.run_id)
        except SchemaConversionError as exc:
            out.rejected.append(
                Rejection("tool_servers", entry, f"unconvertible_server: {exc}", where)
            )
            continue
        if origin.domain:
            server = server.model_copy(update={"domain": origin.domain})
        tools = _convert_tools(
            out,
            server,
            entry["tools"],
            lambda srv, raw, taken: tool_from_mcp(
                srv, raw, origin.run_id, taken, origin.max_text_bytes
            ),
            f"{where}.tools",
        )
        _finish_server(out, server, tools, entry, where, len(entry["tools"]))
    return out


def convert_openai(document: Any, origin: Origin) -> Converted:
    entries = _entries(document)
    if entries is None:
        raise DocumentError("must be a JSON list of OpenAI tools or an object with a 'tools' list")
    name = origin.server_name or origin.name
    server = _simple_server(origin, name, name, "", DEFAULT_DOMAIN, len(entries))
    return _convert_list(
        origin,
        entries,
        server,
        lambda srv, raw, taken: tool_from_openai(
            srv, raw, origin.run_id, taken, origin.max_text_bytes
        ),
        {"name": name, "tools": len(entries)},
    )


# -- bfcl ---------------------------------------------------------------------------------------


def bfcl_schema(schema: Any) -> Any:
    """Map BFCL's type names to JSON schema, recursively. An empty type name is dropped (the
    schema accepts any value); unknown names are left to be rejected.

    >>> bfcl_schema({"type": "dict", "properties": {"x": {"type": "float"},
    ...              "p": {"type": "tuple", "items": {"type": "integer"}}}})
    {'type': 'object', 'properties': {'x': {'type': 'number'}, 'p': {'type': 'array', \
'items': {'type': 'integer'}}}}
    """
    if isinstance(schema, list):
        return [bfcl_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if value == "":
                continue
            kinds = value if isinstance(value, list) else [value]
            if any(isinstance(k, str) and k in BFCL_TYPES and BFCL_TYPES[k] is None for k in kinds):
                out["type"] = list(ALL_JSON_TYPES)
                continue
            mapped = [BFCL_TYPES.get(k, k) if isinstance(k, str) else k for k in kinds]
            out["type"] = mapped if isinstance(value, list) else mapped[0]
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: bfcl_schema(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, list):
            out["prefixItems"] = bfcl_schema(value)
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
            out[key] = bfcl_schema(value)
        else:
            out[key] = value
    return out


def convert_bfcl(document: Any, origin: Origin) -> Converted:
    entries = _entries(document)
    if entries is None:
        raise DocumentError("must be JSON lines (or a JSON list) of BFCL function docs")
    name = origin.server_name or origin.name
    server = _simple_server(origin, name, name, "", DEFAULT_DOMAIN, len(entries))

    def convert(srv: ToolServer, raw: Any, taken: set[str]) -> Tool:
        if not isinstance(raw, dict):
            raise SchemaConversionError(f"function doc is not an object: {raw!r:.80}")
        response = raw.get("response")
        return tool_from_function(
            srv,
            name=raw.get("name"),
            description=raw.get("description"),
            parameters=bfcl_schema(raw.get("parameters")),
            output_schema=bfcl_schema(response) if response else None,
            source_format="bfcl",
            run_id=origin.run_id,
            taken=taken,
            max_text_bytes=origin.max_text_bytes,
        )

    return _convert_list(origin, entries, server, convert, {"name": name})


# -- tooluniverse -------------------------------------------------------------------------------


def convert_tooluniverse(document: Any, origin: Origin) -> Converted:
    if not isinstance(document, list):
        raise DocumentError("must be a JSON list of ToolUniverse tools")
    name = origin.server_name or origin.name
    server = _simple_server(origin, name, name.replace("_", " "), "", DEFAULT_DOMAIN, len(document))

    def convert(srv: ToolServer, raw: Any, taken: set[str]) -> Tool:
        if not isinstance(raw, dict):
            raise SchemaConversionError(f"tool entry is not an object: {raw!r:.80}")
        return tool_from_function(
            srv,
            name=raw.get("name"),
            description=raw.get("description"),
            parameters=raw.get("parameter"),
            output_schema=raw.get("return_schema") or None,
            source_format="tooluniverse",
            run_id=origin.run_id,
            taken=taken,
            max_text_bytes=origin.max_text_bytes,
        )

    return _convert_list(origin, document, server, convert, {"name": name})


# -- openapi ------------------------------------------------------------------------------------


def _pick_media(content: Any) -> Any:
    """The schema of the best media type: JSON first, then forms, then whatever is first."""
    if not isinstance(content, dict) or not content:
        return None
    keys = list(content)
    ranked = (
        [k for k in keys if k.split(";")[0].strip() == "application/json"]
        + [k for k in keys if "json" in k]
        + [k for k in keys if k in ("application/x-www-form-urlencoded", "multipart/form-data")]
        + keys
    )
    media = content[ranked[0]]
    return media.get("schema") if isinstance(media, dict) else None


def _response_schema(resolver: RefResolver, operation: dict[str, Any]) -> Any:
    responses = operation.get("responses")
    if not isinstance(responses, dict):
        return None
    by_code = {str(code): response for code, response in responses.items()}
    for code in SUCCESS_CODES:
        if code in by_code:
            response = resolver.deref(by_code[code])
            if not isinstance(response, dict):
                return None
            content = response.get("content")
            if not isinstance(content, dict):
                return None
            json_types = [k for k in content if "json" in k or k == "*/*"]
            if not json_types:
                return None
            media = content[json_types[0]]
            schema = media.get("schema") if isinstance(media, dict) else None
            if not schema:
                return None
            return resolver.schema(schema)
    return None


def _operation_parameters(
    resolver: RefResolver, name: str, path_params: list[Any], operation: dict[str, Any]
) -> dict[str, Any]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*path_params, *(operation.get("parameters") or [])]:
        param = resolver.deref(raw)
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise SchemaConversionError(f"{name}: a parameter has no name: {raw!r:.80}")
        merged[(param["name"], str(param.get("in")))] = param
    properties: dict[str, Any] = {}
    required: list[str] = []
    for (pname, where), param in merged.items():
        if where not in PARAMETER_LOCATIONS:
            continue
        schema = param.get("schema")
        if schema is None:
            schema = _pick_media(param.get("content"))
        schema = resolver.schema(schema) if schema is not None else {}
        if not isinstance(schema, dict):
            raise SchemaConversionError(f"{name}: parameter {pname!r} has a non-object schema")
        if param.get("description") and "description" not in schema:
            schema = {**schema, "description": param["description"]}
        key = pname if pname not in properties else f"{where}_{pname}"
        properties[key] = schema
        if param.get("required") or where == "path":
            required.append(key)
    body = resolver.deref(operation.get("requestBody"))
    if isinstance(body, dict):
        schema = _pick_media(body.get("content"))
        if schema is not None:
            schema = resolver.schema(schema)
            body_required = bool(body.get("required"))
            if (
                isinstance(schema, dict)
                and schema.get("type") == "object"
                and isinstance(schema.get("properties"), dict)
                and schema["properties"]
            ):
                inner_required = schema.get("required") or []
                for pname, sub in schema["properties"].items():
                    key = pname if pname not in properties else f"body_{pname}"
                    properties[key] = sub
                    if body_required and pname in inner_required:
                        required.append(key)
            else:
                if isinstance(schema, dict) and body.get("description"):
                    schema = {"description": body["description"], **schema}
                key = "body" if "body" not in properties else "request_body"
                properties[key] = schema
                if body_required:
                    required.append(key)
    return {"type": "object", "properties": properties, "required": required}


def _operations(paths: dict[str, Any]) -> Iterator[tuple[str, str, list[Any], Any]]:
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") if isinstance(item.get("parameters"), list) else []
        for method, operation in item.items():
            if method.lower() in HTTP_METHODS:
                yield str(path), method.lower(), shared, operation


def _openapi_server_name(origin: Origin, info: dict[str, Any]) -> str:
    provider = info.get("x-providerName")
    if isinstance(provider, str) and provider:
        service = info.get("x-serviceName")
        return f"{provider}:{service}" if isinstance(service, str) and service else provider
    return origin.name


def convert_openapi(document: Any, origin: Origin) -> Converted:
    """An OpenAPI 3 spec: one server, one tool per operation (rules in the module docstring)."""
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise DocumentError("must be an OpenAPI 3 object with a 'paths' object")
    out = Converted()
    info = document.get("info") if isinstance(document.get("info"), dict) else {}
    categories = info.get("x-apisguru-categories")
    domain = (
        categories[0]
        if isinstance(categories, list) and categories and isinstance(categories[0], str)
        else DEFAULT_DOMAIN
    )
    name = origin.server_name or _openapi_server_name(origin, info)
    server = _simple_server(
        origin,
        name,
        str(info.get("title") or name),
        str(info.get("description") or ""),
        domain,
        0,
    )
    resolver = RefResolver(document)
    taken: set[str] = set()
    tools: list[Tool] = []
    operations = list(_operations(document["paths"]))
    for path, method, shared, operation in operations:
        where = f"{origin.where}#paths[{path}].{method}"
        if not isinstance(operation, dict):
            out.rejected.append(
                Rejection(
                    "tools", operation, "unconvertible_tool: operation is not an object", where
                )
            )
            continue
        operation_id = operation.get("operationId")
        base = sanitize_function_name(operation_id) if isinstance(operation_id, str) else ""
        if not base:
            base = sanitize_function_name(f"{method} {path}") or method
        tool_name = unique_name(base, taken)
        resolver.begin()
        summary = str(operation.get("summary") or "").strip()
        detail = str(operation.get("description") or "").strip()
        description = (
            f"{summary}\n\n{detail}"
            if summary and detail and detail != summary
            else summary or detail
        )
        original = (
            operation_id
            if isinstance(operation_id, str) and not FUNCTION_NAME.match(operation_id)
            else None
        )
        try:
            tools.append(
                tool_from_function(
                    server,
                    name=tool_name,
                    description=description,
                    parameters=_operation_parameters(resolver, tool_name, shared, operation),
                    output_schema=_response_schema(resolver, operation),
                    source_format="openapi",
                    run_id=origin.run_id,
                    original_name=original,
                    max_text_bytes=origin.max_text_bytes,
                )
            )
        except SchemaConversionError as exc:
            out.rejected.append(Rejection("tools", operation, f"{exc.code}: {exc}", where))
        except RecursionError:
            out.rejected.append(
                Rejection("tools", operation, "unconvertible_tool: schema nests too deeply", where)
            )
    payload = {"info": info, "operations": len(operations)}
    _finish_server(out, server, tools, payload, origin.where, len(operations))
    return out


CONVERTERS: dict[Format, Callable[[Any, Origin], Converted]] = {
    "mcp": convert_mcp,
    "openai": convert_openai,
    "openapi": convert_openapi,
    "bfcl": convert_bfcl,
    "tooluniverse": convert_tooluniverse,
}


def convert(
    document: Any, fmt: Format | Literal["auto"], origin: Origin
) -> tuple[Format, Converted]:
    """Convert one parsed document, detecting its format when ``fmt`` is ``"auto"``."""
    chosen = detect_format(document) if fmt == "auto" else fmt
    return chosen, CONVERTERS[chosen](document, origin)


__all__ = [
    "FORMATS",
    "FUNCTION_NAME",
    "Converted",
    "DocumentError",
    "Format",
    "Origin",
    "RefResolver",
    "Rejection",
    "bfcl_schema",
    "convert",
    "convert_bfcl",
    "convert_mcp",
    "convert_openai",
    "convert_openapi",
    "convert_tooluniverse",
    "detect_format",
    "parse_document",
    "sanitize_function_name",
    "unique_name",
]
