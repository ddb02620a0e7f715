"""Python source for mock-data tools, from a tool's schema and the calls it must answer.

The offline tool synthesizer is a template, not a model: each tool becomes one function with
its rows embedded as Python literals. A row is (key, result, requires, creates):

- ``key``: the call's normalised arguments (the required ones, or all given ones when the
  schema requires none); a call matches a row when its normalised arguments give the key;
- ``result``: what the call returns;
- ``requires``: values that an earlier call in the session must have created (a booking id
  the booking tool made) - the row answers only once they exist in ``STATE["records"]``;
- ``creates``: values this call creates (ids it returns) and records in ``STATE``.

Rows without ``requires`` are plain lookups; each recorded lookup row comes with decoy rows
(other keys, other results), so a call must carry the right arguments to get its answer.
Unknown arguments get an error that does not repeat them. Normalisation (case, spaces,
number form) matches :func:`jobs.envs.traces.normalise`.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.envs.traces import ID_NAME, last_key
from schemas.answers import leaves, normalise

WRITE_VERBS = frozenset(
    [
        "add",
        "book",
        "cancel",
        "checkout",
        "create",
        "delete",
        "make",
        "open",
        "place",
        "post",
        "put",
        "register",
        "remove",
        "request",
        "reschedule",
        "send",
        "set",
        "start",
        "submit",
        "transfer",
        "update",
    ]
)


def python_name(name: str) -> str:
    """A valid, non-keyword Python identifier for a tool name.

    >>> python_name("get-user.profile"), python_name("2fa_check"), python_name("class")
    ('get_user_profile', 't_2fa_check', 'class_')
    """
    cleaned = re.sub(r"\W", "_", name).strip("_") or "tool"
    if cleaned[0].isdigit():
        cleaned = f"t_{cleaned}"
    return f"{cleaned}_" if keyword.iskeyword(cleaned) else cleaned


def writes_state(tool_name: str) -> bool:
    """Whether a tool's name says it changes the world (its first word is a write verb).

    >>> writes_state("book_flight"), writes_state("get_booking"), writes_state("addPayee")
    (True, False, True)
    """
    first = re.split(r"[_\W]|(?<=[a-z])(?=[A-Z])", tool_name)[0].lower()
    return first in WRITE_VERBS


def key_of(arguments: Mapping[str, Any], required: Sequence[str]) -> dict[str, Any]:
    """The lookup key of a call: its required arguments, normalised (all given ones when
    the schema requires none). Mirrors ``_key`` in the generated code."""
    names = [n for n in required if n in arguments] if required else sorted(arguments)
    return {n: _norm(arguments[n]) for n in sorted(names)}


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if value is None:
        return None
    return normalise(value)


@dataclass
class MockRow:
    arguments: dict[str, Any]
    result: Any
    requires: list[str] = field(default_factory=list)
    creates: list[str] = field(default_factory=list)


def _perturb(value: Any, salt: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value + 7 * salt
    if isinstance(value, float):
        return round(value * (1 + 0.13 * salt), 2)
    if isinstance(value, str):
        digest = hashlib.sha256(f"{value}:{salt}".encode()).hexdigest()[:6]
        return f"{value}-{digest}"
    if isinstance(value, list):
        return [_perturb(v, salt) for v in value]
    if isinstance(value, dict):
        return {k: _perturb(v, salt) for k, v in value.items()}
    return value


def decoys(row: MockRow, required: Sequence[str], count: int = 2) -> list[MockRow]:
    """Other entries of the same table: every key argument and returned value changed."""
    keyed = set(key_of(row.arguments, required))
    return [
        MockRow(
            arguments={k: _perturb(v, salt) if k in keyed else v for k, v in row.arguments.items()},
            result=_perturb(row.result, salt),
        )
        for salt in range(1, count + 1)
        if keyed
    ]


_TEMPLATE = '''\
def _astra_norm(value):
    if isinstance(value, dict):
        return {{k: _astra_norm(v) for k, v in sorted(value.items())}}
    if isinstance(value, list):
        return [_astra_norm(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split()).lower()


_ROWS_{fn} = {rows!r}


def {fn}(**kwargs):
    """{doc}"""
    missing = [name for name in {required!r} if name not in kwargs]
    if missing:
        return {{"error": "missing required argument: " + missing[0]}}
    unknown = [name for name in kwargs if name not in {known!r}]
    if unknown:
        return {{"error": "unknown argument: " + sorted(unknown)[0]}}
    names = {key_names!r} or sorted(kwargs)
    wanted = {{name: _astra_norm(kwargs[name]) for name in sorted(names)}}
    records = STATE.setdefault("records", {{}})
    for key, result, requires, creates in _ROWS_{fn}:
        if key != wanted:
            continue
        absent = [ref for ref in requires if ref not in records]
        if absent:
            return {{"error": "no such record: it was never created in this session"}}
        for ref in creates:
            records[ref] = {name!r}
        return result
    return {{"error": "no record matches these arguments"}}
'''


def tool_source(
    name: str,
    description: str,
    parameters: Mapping[str, Any],
    rows: Sequence[MockRow],
    key_all: bool = False,
) -> str:
    """The module source of one tool (its function is :func:`python_name` of ``name``).

    The key is the required arguments, or every given argument with ``key_all`` (when two
    recorded calls share their required arguments but not their results). Rows with the
    same key keep the first; the caller verifies every recorded call against its result,
    so a conflict shows up as a failed member, never as a silent overwrite.
    """
    fn = python_name(name)
    required = list(parameters.get("required") or [])
    key_names = [] if key_all else required
    known = sorted(set(parameters.get("properties") or {}) | set(required))
    table: list[tuple[Any, Any, list[str], list[str]]] = []
    seen: set[str] = set()
    for row in rows:
        key = key_of(row.arguments, key_names)
        marker = repr(key)
        if marker in seen:
            continue
        seen.add(marker)
        table.append((key, row.result, sorted(row.requires), sorted(row.creates)))
    doc = " ".join(description.split()).replace("\\", "/").replace('"""', "'")[:300]
    return _TEMPLATE.format(
        fn=fn,
        rows=table,
        doc=doc or fn,
        required=required,
        key_names=key_names,
        known=known,
        name=fn,
    )


def created_values(result: Any) -> list[str]:
    """The id-like strings a write returns: what later calls may refer to."""
    return sorted(
        {
            normalise(value)
            for path, value in leaves(result)
            if isinstance(value, str) and ID_NAME.search(last_key(path))
        }
    )
