"""Tool catalogs in five input formats, converted to canonical ``ToolServer`` and ``Tool`` rows.

Every converter takes one parsed document and returns a :class:`Converted`: the servers and
tools that normalised, and a :class:`Rejection` (table, payload, ``code: detail`` reason,
where) for every entry that did not. Nothing is dropped silently. The formats and their rules:

``mcp``
    ASTRA's server list: ``{"catalog": NAME, "servers": [{"server_info": {...}, "tools": [...]}]}``
    with MCP tools (``inputSchema``, ``outputSchema``).
``openai``
    A list of ``{"type": "function", "function": {...}}`` entries (or bare function objects), or
    ``{"tools": [...]}``. One server per document, named after the file (or a given name).
    (BFCL and ToolUniverse files also yield one server per file.)
``openapi``
    An OpenAPI 3.x spec. Each operation becomes a tool: its name is the ``operationId`` (or
    method and path) sanitised to ``^[A-Za-z0-9_-]{1,64}$`` and made unique within the spec; its
    description is the summary and description; its parameters are the path, query and header
    parameters (cookie parameters are not tool arguments) plus the request body (an object
    body's properties are flattened beside them, ``body_``-prefixed on a name clash, and are
    required only when the body is; any other body is one ``body`` argument); its output
    schema is the JSON schema of the 200 (else 201) response, or None. Local ``$ref``s are
    inlined; a reference that recurses is cut to a shallow copy of its target marked with a
    ``$comment``; an unknown or external ``$ref`` rejects the operation. A schema without a
    ``type`` gets ``object`` when it has ``properties`` and ``array`` when it has ``items``,
    and is rejected otherwise. The server is the spec's ``info`` (title, description); its
    domain is the first ``x-apisguru-categories`` entry when present.
``bfcl``
    Berkeley Function Calling Leaderboard function docs: JSON lines (or a JSON list) of
    ``{"name", "description", "parameters", "response"?}`` with BFCL's type names mapped to JSON
    schema (``dict``→object, ``float``→number, ``tuple``→array, ``any``→every JSON type, the
    Java and JavaScript names likewise; a list of ``items`` becomes ``prefixItems``).
    ``response`` becomes the output schema.
``tooluniverse``
    A ToolUniverse tool file: a JSON list of ``{"name", "type", "description", "parameter",
    "return_schema"}``; ``return_schema`` becomes the output schema. One server per file.

A server whose every tool was rejected is rejected too (``no_valid_tools``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import unquote

import yaml

from schemas.tools import (
    FUNCTION_NAME,
    SchemaConversionError,
    Tool,
    ToolServer,
    server_from_mcp,
    tool_from_function,
    tool_from_mcp,
    tool_from_openai,
)

Format = Literal["mcp", "openai", "openapi", "bfcl", "tooluniverse"]
FORMATS: tuple[Format, ...] = get_args(Format)
DEFAULT_DOMAIN = "general"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PARAMETER_LOCATIONS = ("path", "query", "header")
SUCCESS_CODES = ("200", "201")
MAX_REF_DEPTH = 6
"""Nested ``$ref`` expansions deeper than this are cut (see :class:`RefResolver`)."""
MAX_SCHEMA_NODES = 120
"""Schema objects one operation's inlined schemas may hold before further ``$ref``s are cut."""
SUBSCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "not", "contains", "allOf", "anyOf", "oneOf", "prefixItems"}
)

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
}
"""BFCL's type names (bfcl_eval.constants.type_mappings) to JSON-schema types; None is 'any'."""


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


def _convert_list(
    origin: Origin,
    entries: list[Any],
    server: ToolServer,
    convert: Callable[[ToolServer, Any], Tool],
    payload: Any,
) -> Converted:
    out = Converted()
    tools: list[Tool] = []
    for index, raw in enumerate(entries):
        try:
            tools.append(convert(server, raw))
        except SchemaConversionError as exc:
            out.rejected.append(
                Rejection("tools", raw, f"unconvertible_tool: {exc}", f"{origin.where}[{index}]")
            )
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
        tools: list[Tool] = []
        for tool_index, raw in enumerate(entry["tools"]):
            try:
                tools.append(tool_from_mcp(server, raw, run_id=origin.run_id))
            except SchemaConversionError as exc:
                out.rejected.append(
                    Rejection(
                        "tools", raw, f"unconvertible_tool: {exc}", f"{where}.tools[{tool_index}]"
                    )
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
        lambda srv, raw: tool_from_openai(srv, raw, run_id=origin.run_id),
        {"name": name, "tools": len(entries)},
    )


# -- bfcl ---------------------------------------------------------------------------------------


def bfcl_schema(schema: Any) -> Any:
    """Map BFCL's type names to JSON schema, recursively; unknown names are left to be rejected.

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

    def convert(srv: ToolServer, raw: Any) -> Tool:
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
        )

    return _convert_list(origin, entries, server, convert, {"name": name})


# -- tooluniverse -------------------------------------------------------------------------------


def convert_tooluniverse(document: Any, origin: Origin) -> Converted:
    if not isinstance(document, list):
        raise DocumentError("must be a JSON list of ToolUniverse tools")
    name = origin.server_name or origin.name
    server = _simple_server(origin, name, name.replace("_", " "), "", DEFAULT_DOMAIN, len(document))

    def convert(srv: ToolServer, raw: Any) -> Tool:
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
        )

    return _convert_list(origin, document, server, convert, {"name": name})


# -- openapi ------------------------------------------------------------------------------------


class RefResolver:
    """Inlines local ``$ref``s of one OpenAPI document, with a recursion guard and a size budget.

    A reference already being expanded (recursion), nested deeper than ``MAX_REF_DEPTH``, or
    that would take one operation's inlined schemas past ``MAX_SCHEMA_NODES`` schema objects
    is cut: it becomes a shallow copy of its target (type, title, description) with a
    ``$comment``.

    >>> spec = {"components": {"schemas": {"Node": {"type": "object", "properties": {
    ...     "next": {"$ref": "#/components/schemas/Node"}}}}}}
    >>> RefResolver(spec).schema({"$ref": "#/components/schemas/Node"})["properties"]["next"]
    {'type': 'object', '$comment': 'recursive $ref #/components/schemas/Node not expanded'}
    """

    def __init__(self, root: Any) -> None:
        self.root = root
        self._cache: dict[str, tuple[Any, int]] = {}
        self._used = 0

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise SchemaConversionError(f"external $ref {ref!r} is not supported")
        node = self.root
        for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaConversionError(f"unknown $ref {ref!r}")
        return node

    def deref(self, node: Any) -> Any:
        """Follow a ``$ref`` object (a parameter, request body or response) to its target."""
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise SchemaConversionError(f"$ref {ref!r} refers to itself")
            seen.add(ref)
            node = self.lookup(ref)
        return node

    def begin(self) -> None:
        """Start a new size budget (one per operation: its parameters, body and response)."""
        self._used = 0

    def schema(self, node: Any) -> Any:
        """``node`` with every ``$ref`` inlined and missing object/array types filled in."""
        result, _ = self._schema(node, ())
        return result

    def _schema(self, node: Any, stack: tuple[str, ...]) -> tuple[Any, bool]:
        """The inlined schema, and whether a reference inside it was cut."""
        if isinstance(node, list):
            parts = [self._schema(v, stack) for v in node]
            return [v for v, _ in parts], any(c for _, c in parts)
        if not isinstance(node, dict):
            return node, False
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.lookup(ref)
            if ref in stack:
                return _cut(target, f"recursive $ref {ref} not expanded"), True
            if len(stack) >= MAX_REF_DEPTH or self._used >= MAX_SCHEMA_NODES:
                return _cut(target, f"$ref {ref} not expanded (size limit)"), True
            cached = self._cache.get(ref)
            if cached is not None and self._used + cached[1] <= MAX_SCHEMA_NODES:
                inlined, cut = cached[0], False
                self._used += cached[1]
            else:
                before = self._used
                inlined, cut = self._schema(target, (*stack, ref))
                if not cut:
                    self._cache[ref] = (inlined, self._used - before)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(inlined, dict):
                extra, extra_cut = self._schema(siblings, stack)
                return {**inlined, **extra}, cut or extra_cut
            return inlined, cut
        self._used += 1
        out: dict[str, Any] = {}
        cut = False
        for key, value in node.items():
            if key in ("properties", "patternProperties") and isinstance(value, dict):
                props: dict[str, Any] = {}
                for name, sub in value.items():
                    props[name], sub_cut = self._schema(sub, stack)
                    cut = cut or sub_cut
                out[key] = props
            elif key in SUBSCHEMA_KEYS:
                out[key], sub_cut = self._schema(value, stack)
                cut = cut or sub_cut
            else:
                out[key] = value
        _fill_type(out)
        return out, cut


def _fill_type(schema: dict[str, Any]) -> None:
    if "type" not in schema:
        if "properties" in schema:
            schema["type"] = "object"
        elif "items" in schema:
            schema["type"] = "array"


def _cut(target: Any, comment: str) -> dict[str, Any]:
    """A reference not expanded: the target's type, title and description, and why."""
    fields = ("type", "title", "description")
    shallow = {k: target[k] for k in fields if isinstance(target, dict) and k in target}
    if "type" not in shallow:
        shallow["type"] = "array" if isinstance(target, dict) and "items" in target else "object"
    shallow["$comment"] = comment
    return shallow


_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize_function_name(raw: str) -> str:
    """Turn an operationId or ``method path`` into a valid function name (may be empty).

    >>> sanitize_function_name("get /mapping/values/{key}")
    'get_mapping_values_key'
    """
    name = _NOT_NAME_CHARS.sub("_", raw).strip("_")
    return re.sub(r"_{2,}", "_", name)[:64]


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... (kept within 64 characters) if already taken.

    >>> unique_name("f", {"f", "f_2"})
    'f_3'
    """
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = name[: 64 - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


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
                )
            )
        except SchemaConversionError as exc:
            out.rejected.append(Rejection("tools", operation, f"unconvertible_tool: {exc}", where))
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
