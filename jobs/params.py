"""One parser turns ``key=value`` strings into a job's frozen ``Params`` dataclass.

Help text lives in each field's ``metadata["help"]``; errors name the field, the rule and a fix.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from typing import Any, Literal, get_args, get_origin


class ParamsError(ValueError):
    pass


def _coerce(name: str, kind: Any, raw: str) -> Any:
    origin = get_origin(kind)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        if raw.lower() in ("none", "null", ""):
            return None
        return _coerce(name, args[0], raw)
    if origin is Literal:
        allowed = [str(a) for a in get_args(kind)]
        if raw not in allowed:
            raise ParamsError(f"param {name}={raw!r}: must be one of {allowed}")
        return raw
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(raw)
        except ValueError:
            allowed = [m.value for m in kind]
            raise ParamsError(f"param {name}={raw!r}: must be one of {allowed}") from None
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ParamsError(f"param {name}={raw!r}: expected true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ParamsError(f"param {name}={raw!r}: expected {kind.__name__}") from None
    if origin in (tuple, list):
        inner = get_args(kind)[0]
        return tuple(_coerce(name, inner, part.strip()) for part in raw.split(",") if part.strip())
    return raw


def parse_params(params_cls: type, pairs: list[str] | dict[str, Any]) -> Any:
    """Build ``params_cls`` from ``["k=v", ...]`` (CLI) or a dict (a recorded run)."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    hints = typing.get_type_hints(params_cls)
    values: dict[str, Any] = {}
    if isinstance(pairs, dict):
        for key, value in pairs.items():
            if key not in fields:
                raise ParamsError(f"unknown param {key!r}; params are {sorted(fields)}")
            kind = hints[key]
            values[key] = tuple(value) if isinstance(value, list) else value
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                values[key] = kind(value)
        return params_cls(**values)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ParamsError(f"param {pair!r} must look like key=value")
        key = key.strip().replace("-", "_")
        if key not in fields:
            raise ParamsError(f"unknown param {key!r}; params are {sorted(fields)}")
        values[key] = _coerce(key, hints[key], raw.strip())
    try:
        return params_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ParamsError(str(exc)) from exc


def describe_params(params_cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) for each field, for ``--help`` and ``astra jobs show``."""
    hints = typing.get_type_hints(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        default = "" if f.default is dataclasses.MISSING else repr(f.default)
        kind = getattr(hints[f.name], "__name__", str(hints[f.name])).replace("typing.", "")
        rows.append((f.name, kind, default, f.metadata.get("help", "")))
    return rows
