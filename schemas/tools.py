"""Tool servers and tools. The canonical tool form is the OpenAI function-calling schema.

:func:`tool_from_function` is the one gate every input format goes through (MCP and OpenAI
entries here, OpenAPI, BFCL and ToolUniverse in :mod:`schemas.formats`) once it has a name, a
description, an input schema and maybe an output schema. It keeps what is usable and raises
:class:`SchemaConversionError` (its ``code`` and the reason) only for what is not, so callers
can quarantine it. The rules:

Name
    Must be a non-empty string. A name that already matches OpenAI's function-name rule
    ``^[A-Za-z0-9_-]{1,64}$`` is kept and ``original_name`` is None. Any other name (dots,
    spaces, non-ASCII, over 64 characters) gets a deterministic alias (:func:`function_alias`):
    other characters become ``_``; accented letters lose their accents; when letters are lost
    (CJK and other scripts) or the name is cut to 64, an 8-hex-digit hash of the original is
    appended; and the alias is made unique within its server (``_2``, ``_3``... after the
    server's valid names and earlier aliases). ``name`` is the alias, used in prompts, code
    and calls downstream; ``original_name`` keeps the catalog's name, and exports restore it.
Description
    Never a reason to reject. ``description_quality`` says what it is worth: ``ok`` (at least
    3 words, or at least 4 CJK characters for languages written without spaces), ``short``
    (kept as written, e.g. ``tbd``), or ``derived``: the source had none, and the description
    is written from the name and schemas (``Search hotel. Takes: city (string), nights
    (integer, optional).``).
Input schema
    Missing or ``{}``: no arguments. Otherwise it must be a JSON object of type ``object``
    (else rejected) whose ``properties`` is an object and ``required`` a list of names (else
    rejected). Required names that are not properties are dropped from ``required`` (a
    ``$comment`` lists them) and the tool is kept: nothing could be passed for them.
Sub-schemas (every property, nested properties and items, and the output schema)
    A sub-schema without ``type`` (``{}``, ``{"description": ...}``, a bare ``anyOf``...)
    accepts any JSON value and is kept as written. A ``type`` outside the JSON-schema names
    (``string``, ``number``, ``integer``, ``boolean``, ``array``, ``object``, ``null``) rejects
    the tool; a sub-schema that is not an object (or ``true``/``false``) rejects it too.
    Output schemas of every shape are kept, top-level ``oneOf``/``anyOf``/``allOf`` included.
References
    Local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) of input and output schemas are
    inlined and ``$defs``/``definitions`` dropped (:func:`schemas.jsonschema.inline_refs`:
    recursion cut with a ``$comment``; an unresolvable reference becomes an untyped schema
    with a ``$comment``). Schemas without a ``$ref`` are stored exactly as given.
Size
    A description, input schema or output schema (canonical JSON) over ``max_text_bytes``
    bytes (default ``DEFAULT_MAX_TEXT_BYTES``, 64 KiB) rejects the tool with the code
    ``text_too_large``.

A tool's ``id`` hashes its server, name, description and schemas, so a tool whose name and
description were already valid keeps the id it had before these rules.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any, ClassVar, Literal

from schemas.base import Json, Row, canonical_json
from schemas.jsonschema import SchemaConversionError, inline_refs

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME_CHARS = 64
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
DEFAULT_MAX_TEXT_BYTES = 64 * 1024
"""A description or schema (canonical JSON) larger than this many bytes rejects the tool."""
MIN_DESCRIPTION_WORDS = 3
"""A description with fewer words (and fewer than ``MIN_DESCRIPTION_CJK`` CJK characters) is
``short``."""
MIN_DESCRIPTION_CJK = 4
"""CJK characters that make a description ``ok`` in a language written without spaces."""
ALIAS_HASH_CHARS = 8

SourceFormat = Literal["mcp", "openai", "openapi", "bfcl", "tooluniverse"]
DescriptionQuality = Literal["ok", "short", "derived"]


class TextTooLargeError(SchemaConversionError):
    """A description or schema over the ingest's ``max_text_bytes``."""

    code: ClassVar[str] = "text_too_large"


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def description_quality(text: str) -> Literal["ok", "short"]:
    """``ok`` for at least 3 words or 4 CJK characters, else ``short``.

    >>> description_quality("Get the forecast for a city"), description_quality("tbd")
    ('ok', 'short')
    >>> description_quality("获取所有菜谱"), description_quality("菜谱")
    ('ok', 'short')
    """
    cjk = len(_CJK.findall(text))
    words = [w for w in _CJK.sub(" ", text).split() if any(c.isalnum() for c in w)]
    return "ok" if len(words) >= MIN_DESCRIPTION_WORDS or cjk >= MIN_DESCRIPTION_CJK else "short"


def _upcast_v1(record: dict[str, Any]) -> dict[str, Any]:
    """Version 1 rows had valid names only and a description of 8 characters or more."""
    description = record.get("description") or ""
    return {
        **record,
        "original_name": None,
        "description_quality": description_quality(description),
    }


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
    # 2: ``original_name`` (the catalog's name when ``name`` is an alias) and
    # ``description_quality``.
    SCHEMA_VERSION: ClassVar[int] = 2
    UPCASTS: ClassVar[dict[int, Any]] = {1: _upcast_v1}

    server_id: str
    name: str
    """A valid OpenAI function name: the catalog's own, or an alias of it."""
    description: str
    parameters: Json
    output_schema: Json | None = None
    domain: str
    source_format: SourceFormat
    original_name: str | None = None
    """The catalog's name when ``name`` is an alias of it; None when the two are the same."""
    description_quality: DescriptionQuality = "ok"
    """``ok``, ``short`` (kept as written) or ``derived`` (the source had none)."""

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


# -- names ----------------------------------------------------------------------------------------

_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize_function_name(raw: str) -> str:
    """Turn a name (an operationId, ``method path``...) into a valid function name by
    replacing other characters with ``_`` and cutting it to 64 (may be empty).

    >>> sanitize_function_name("get /mapping/values/{key}")
    'get_mapping_values_key'
    """
    name = _NOT_NAME_CHARS.sub("_", raw).strip("_")
    return re.sub(r"_{2,}", "_", name)[:MAX_NAME_CHARS]


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... (kept within 64 characters) if already taken.

    >>> unique_name("f", {"f", "f_2"})
    'f_3'
    """
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


def function_alias(name: str, taken: set[str] | None = None) -> str:
    """``name`` when it is a valid function name; else its deterministic alias (rules in the
    module docstring), unique among ``taken`` (which it joins) when given.

    >>> function_alias("Hotels.SearchHotel"), function_alias("get weather")
    ('Hotels_SearchHotel', 'get_weather')
    >>> function_alias("café.crème")
    'cafe_creme'
    >>> function_alias("获取所有菜谱")
    'tool_13f3d3d4'
    >>> function_alias("search.hotel", {"search_hotel"})
    'search_hotel_2'
    """
    if FUNCTION_NAME.match(name):
        if taken is not None:
            taken.add(name)
        return name
    letters = "".join(
        c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)
    )
    lost = any(ord(c) > 127 and (c.isalnum() or c == "_") for c in letters)
    full = re.sub(r"_{2,}", "_", _NOT_NAME_CHARS.sub("_", letters).strip("_"))
    alias = full
    if lost or not full or len(full) > MAX_NAME_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()[:ALIAS_HASH_CHARS]
        stem = full[: MAX_NAME_CHARS - ALIAS_HASH_CHARS - 1].rstrip("_") or "tool"
        alias = f"{stem}_{digest}"
    return unique_name(alias, taken) if taken is not None else alias


# -- schemas ----------------------------------------------------------------------------------


def _check_property(tool: str, path: str, schema: Any) -> None:
    """Reject a sub-schema that is not a schema or names an unknown type; an untyped one
    accepts any value."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaConversionError(f"{tool}: {path} is not a JSON-schema object")
    kinds = schema.get("type")
    if kinds is not None:
        for kind in kinds if isinstance(kinds, list) else [kinds]:
            if not isinstance(kind, str) or kind not in JSON_TYPES:
                raise SchemaConversionError(f"{tool}: {path} has unknown type {kind!r}")
    items = schema.get("items")
    if isinstance(items, list):
        for index, sub in enumerate(items):
            _check_property(tool, f"{path}.items[{index}]", sub)
    elif items is not None:
        _check_property(tool, f"{path}.items", items)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            _check_property(tool, f"{path}.{key}", sub)


def normalize_parameters(tool: str, schema: Any) -> dict[str, Any]:
    """Validate an input JSON schema and return it in OpenAI's shape (an object schema).

    >>> normalize_parameters("f", None)
    {'type': 'object', 'properties': {}, 'required': []}
    >>> normalize_parameters("f", {"type": "object", "properties": {"x": {}}})
    {'type': 'object', 'properties': {'x': {}}, 'required': []}
    >>> normalize_parameters("f", {"properties": {"x": {}}, "required": ["x", "y"]})["required"]
    ['x']
    >>> normalize_parameters("f", {"type": "array"})
    Traceback (most recent call last):
    ...
    schemas.jsonschema.SchemaConversionError: f: parameters must have type 'object'
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
    out = {**schema, "type": "object", "properties": properties, "required": required}
    undefined = [r for r in required if r not in properties]
    if undefined:
        out["required"] = [r for r in required if r in properties]
        note = f"required names not defined in properties were dropped: {undefined}"
        comment = schema.get("$comment")
        out["$comment"] = f"{comment}; {note}" if isinstance(comment, str) and comment else note
    return out


# -- descriptions ------------------------------------------------------------------------------

_ASCII_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
MAX_LISTED = 8


def _name_words(name: str) -> str:
    """``SearchHotel`` -> ``Search hotel``; ``getUserID`` -> ``Get user ID``."""
    words = _ASCII_WORDS.findall(name) if name.isascii() else re.findall(r"[^\W_]+", name)
    if not words:
        return name
    words = [w if len(w) > 1 and w.isupper() else w.lower() for w in words]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def _kind(schema: Any) -> str:
    kinds = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kinds, list):
        return " or ".join(str(k) for k in kinds) or "any"
    return str(kinds) if kinds else "any"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return f"{shown}, and {more} more" if more > 0 else shown


def derived_description(name: str, parameters: dict[str, Any], output_schema: Any) -> str:
    """A description written from a tool's name and schemas, for a tool that has none.

    >>> derived_description("SearchHotel", {"properties": {"city": {"type": "string"},
    ...     "nights": {"type": "integer"}, "pets": {}}, "required": ["city"]}, None)
    'Search hotel. Takes: city (string), nights (integer, optional), pets (any, optional).'
    >>> derived_description("list_units", {"properties": {}}, {"type": "array"})
    'List units. Takes no arguments. Returns: array.'
    """
    required = set(parameters.get("required") or [])
    arguments = [
        f"{key} ({_kind(sub)}{'' if key in required else ', optional'})"
        for key, sub in (parameters.get("properties") or {}).items()
    ]
    parts = [_name_words(name) + "."]
    parts.append(f"Takes: {_listed(arguments)}." if arguments else "Takes no arguments.")
    if isinstance(output_schema, dict):
        fields = output_schema.get("properties")
        if isinstance(fields, dict) and fields:
            parts.append(f"Returns: {_kind(output_schema)} with {_listed(list(fields))}.")
        elif "type" in output_schema:
            parts.append(f"Returns: {_kind(output_schema)}.")
    return " ".join(parts)


# -- the gate ---------------------------------------------------------------------------------


def _check_size(tool: str, what: str, text: str, limit: int | None) -> None:
    if limit is None:
        return
    size = len(text.encode())
    if size > limit:
        raise TextTooLargeError(f"{tool}: {what} is {size:,} bytes, over max_text_bytes={limit}")


def tool_from_function(
    server: ToolServer,
    *,
    name: Any,
    description: Any,
    parameters: Any,
    output_schema: Any,
    source_format: SourceFormat,
    run_id: str | None = None,
    taken: set[str] | None = None,
    original_name: str | None = None,
    max_text_bytes: int | None = DEFAULT_MAX_TEXT_BYTES,
) -> Tool:
    """Validate one function (name, description, input schema, optional output schema) by the
    rules in the module docstring.

    ``taken`` holds the names already used in the server (the alias joins it); a caller that
    made ``name`` from another name itself (the OpenAPI path) passes that as
    ``original_name``; ``max_text_bytes=None`` has no size limit.

    >>> srv = ToolServer(source="s", name="n", title="t", description="", domain="d",
    ...                  tool_count=1)
    >>> tool = tool_from_function(srv, name="Hotels.SearchHotel", description="",
    ...     parameters={"type": "object", "properties": {"city": {"type": "string"}},
    ...                 "required": ["city"]},
    ...     output_schema=None, source_format="openai")
    >>> tool.name, tool.original_name, tool.description_quality
    ('Hotels_SearchHotel', 'Hotels.SearchHotel', 'derived')
    >>> tool.description
    'Hotels search hotel. Takes: city (string).'
    """
    if not isinstance(name, str) or not name.strip():
        raise SchemaConversionError(f"tool name {name!r} is missing or not a string")
    if description is not None and not isinstance(description, str):
        raise SchemaConversionError(f"{name}: description must be text, got {description!r:.80}")
    text = (description or "").strip()
    _check_size(name, "description", text, max_text_bytes)
    try:
        parameters = normalize_parameters(name, inline_refs(parameters))
        output_schema = inline_refs(output_schema)
    except RecursionError:
        raise SchemaConversionError(f"{name}: schema nests too deeply") from None
    if output_schema is not None:
        _check_property(name, "output_schema", output_schema)
        if not isinstance(output_schema, dict):
            raise SchemaConversionError(f"{name}: output_schema must be a JSON object")
    _check_size(name, "parameters", canonical_json(parameters), max_text_bytes)
    if output_schema is not None:
        _check_size(name, "output_schema", canonical_json(output_schema), max_text_bytes)
    quality: DescriptionQuality
    if text:
        quality = description_quality(text)
    else:
        text, quality = derived_description(name, parameters, output_schema), "derived"
    alias = function_alias(name, taken)
    if alias != name:
        original_name = name
    return Tool(
        server_id=server.id,
        name=alias,
        description=text,
        parameters=parameters,
        output_schema=output_schema,
        domain=server.domain,
        source_format=source_format,
        original_name=original_name,
        description_quality=quality,
        run_id=run_id,
        parent_ids=[server.id],
    )


def tool_from_mcp(
    server: ToolServer,
    raw: Any,
    run_id: str | None = None,
    taken: set[str] | None = None,
    max_text_bytes: int | None = DEFAULT_MAX_TEXT_BYTES,
) -> Tool:
    """Convert one MCP tool (``name``, ``description``, ``inputSchema``, ``outputSchema``)."""
    if not isinstance(raw, dict):
        raise SchemaConversionError(f"tool entry is not an object: {raw!r:.80}")
    return tool_from_function(
        server,
        name=raw.get("name"),
        description=raw.get("description"),
        parameters=raw.get("inputSchema"),
        output_schema=raw.get("outputSchema"),
        source_format="mcp",
        run_id=run_id,
        taken=taken,
        max_text_bytes=max_text_bytes,
    )


def openai_function(raw: Any) -> dict[str, Any]:
    """The function object of an OpenAI tools-list entry (or a bare function object)."""
    if not isinstance(raw, dict):
        raise SchemaConversionError(f"tool entry is not an object: {raw!r:.80}")
    function = raw.get("function", raw)
    if not isinstance(function, dict):
        raise SchemaConversionError("'function' must be an object")
    return function


def tool_from_openai(
    server: ToolServer,
    raw: Any,
    run_id: str | None = None,
    taken: set[str] | None = None,
    max_text_bytes: int | None = DEFAULT_MAX_TEXT_BYTES,
) -> Tool:
    """Convert one OpenAI tools-list entry (``{"type": "function", "function": {...}}``)."""
    function = openai_function(raw)
    return tool_from_function(
        server,
        name=function.get("name"),
        description=function.get("description"),
        parameters=function.get("parameters"),
        output_schema=None,
        source_format="openai",
        run_id=run_id,
        taken=taken,
        max_text_bytes=max_text_bytes,
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


__all__ = [
    "DEFAULT_MAX_TEXT_BYTES",
    "FUNCTION_NAME",
    "JSON_TYPES",
    "DescriptionQuality",
    "SchemaConversionError",
    "SourceFormat",
    "TextTooLargeError",
    "Tool",
    "ToolServer",
    "derived_description",
    "description_quality",
    "function_alias",
    "normalize_parameters",
    "openai_function",
    "sanitize_function_name",
    "server_from_mcp",
    "tool_from_function",
    "tool_from_mcp",
    "tool_from_openai",
    "unique_name",
]
