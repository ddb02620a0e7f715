"""JSON-schema plumbing every catalog format shares: the conversion error and ``$ref`` inlining.

:class:`RefResolver` inlines the local references (``#/...``) of one document: an OpenAPI spec
(``#/components/schemas/X``, see :mod:`schemas.formats`) or a self-contained JSON schema
(``#/$defs/X``, ``#/definitions/X``, as pydantic and MCP servers write them, see
:func:`inline_refs`). The rules, the same for every format:

- a reference is replaced by a copy of its target (sibling keys beside the ``$ref`` are kept
  and win);
- a reference already being expanded (recursion), nested deeper than ``MAX_REF_DEPTH``, or
  that would take one tool's inlined schemas past ``MAX_SCHEMA_NODES`` schema objects is cut:
  it becomes a shallow copy of its target (type, title, description) with a ``$comment``;
- a reference that cannot be resolved (unknown pointer, another file or URL) becomes an
  untyped schema (any JSON value) with a ``$comment`` saying why; the tool is kept.

Only :meth:`RefResolver.deref`, which follows a reference to an OpenAPI parameter, request body
or response (not a schema), still raises on an unknown reference: without its target there is
no parameter name to call with.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import unquote

MAX_REF_DEPTH = 6
"""Nested ``$ref`` expansions deeper than this are cut (see :class:`RefResolver`)."""
MAX_SCHEMA_NODES = 120
"""Schema objects one tool's inlined schemas may hold before further ``$ref``s are cut."""
SUBSCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "not", "contains", "allOf", "anyOf", "oneOf", "prefixItems"}
)
"""Keys whose values are schemas (or lists of schemas) the resolver walks into, beside
``properties`` and ``patternProperties``."""
DEFINITION_KEYS = ("$defs", "definitions")
"""Where a self-contained schema keeps the targets of its references."""


class SchemaConversionError(ValueError):
    """A tool schema that cannot be converted to the OpenAI function format.

    ``code`` is the reason code its rejection records.
    """

    code: ClassVar[str] = "unconvertible_tool"


class RefResolver:
    """Inlines the local ``$ref``s of one document (rules in the module docstring).

    ``fill_types`` gives a schema without a ``type`` ``object`` when it has ``properties`` and
    ``array`` when it has ``items`` (the OpenAPI path does; the JSON-schema formats keep their
    schemas as written).

    >>> spec = {"components": {"schemas": {"Node": {"type": "object", "properties": {
    ...     "next": {"$ref": "#/components/schemas/Node"}}}}}}
    >>> RefResolver(spec).schema({"$ref": "#/components/schemas/Node"})["properties"]["next"]
    {'type': 'object', '$comment': 'recursive $ref #/components/schemas/Node not expanded'}
    >>> RefResolver(spec).schema({"$ref": "#/components/schemas/Gone", "description": "A gone"})
    {'description': 'A gone', '$comment': "unknown $ref '#/components/schemas/Gone'; any JSON \
value accepted"}
    """

    def __init__(self, root: Any, *, fill_types: bool = True) -> None:
        self.root = root
        self.fill_types = fill_types
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
        """Start a new size budget (one per tool: its parameters, body and response)."""
        self._used = 0

    def schema(self, node: Any, *, expanding: tuple[str, ...] = ()) -> Any:
        """``node`` with every ``$ref`` inlined (and, with ``fill_types``, missing object and
        array types filled in). ``expanding`` lists references ``node`` is already inside of
        (``("#",)`` when ``node`` is the root), so they are cut rather than expanded again."""
        result, _ = self._schema(node, expanding)
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
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            try:
                target = self.lookup(ref)
            except SchemaConversionError as exc:
                extra, extra_cut = self._schema(siblings, stack)
                return {**extra, "$comment": f"{exc}; any JSON value accepted"}, extra_cut
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
        if self.fill_types:
            _fill_type(out)
        return out, cut


def _fill_type(schema: dict[str, Any]) -> None:
    """``object`` for a schema with properties, ``array`` for one with items; else untouched
    (a schema without a type accepts any JSON value)."""
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


def has_refs(schema: Any) -> bool:
    """Whether ``schema`` holds a ``$ref`` anywhere (only such schemas are rewritten).

    >>> has_refs({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}})
    True
    >>> has_refs({"type": "object", "properties": {"$ref": {"type": "string"}}})
    False
    """
    if isinstance(schema, list):
        return any(has_refs(v) for v in schema)
    if not isinstance(schema, dict):
        return False
    if isinstance(schema.get("$ref"), str):
        return True
    for key, value in schema.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            if any(has_refs(v) for v in value.values()):
                return True
        elif key in SUBSCHEMA_KEYS and has_refs(value):
            return True
    return False


def inline_refs(schema: Any) -> Any:
    """A self-contained schema with its local ``$ref``s inlined against itself, and its
    ``$defs``/``definitions`` dropped; a schema without references is returned as it is.

    >>> inline_refs({"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
    ...              "$defs": {"P": {"type": "object", "properties": {"n": {"type": "string"}}}}})
    {'type': 'object', 'properties': {'p': {'type': 'object', 'properties': {'n': {'type': \
'string'}}}}}
    """
    if not has_refs(schema):
        return schema
    resolved = RefResolver(schema, fill_types=False).schema(schema, expanding=("#",))
    if isinstance(resolved, dict):
        resolved = {k: v for k, v in resolved.items() if k not in DEFINITION_KEYS}
    return resolved


__all__ = [
    "DEFINITION_KEYS",
    "MAX_REF_DEPTH",
    "MAX_SCHEMA_NODES",
    "SUBSCHEMA_KEYS",
    "RefResolver",
    "SchemaConversionError",
    "has_refs",
    "inline_refs",
]
