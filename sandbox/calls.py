"""Parse a call statement such as ``get_weather(city="Paris")`` without evaluating anything.

Only a single call of a bare name with literal arguments is accepted; the arguments must be
JSON values (tuples become lists). Parsing happens on the host with :mod:`ast`, so a hostile
call string never reaches an interpreter.

>>> parse_call("get_weather(city='Paris', days=3)")
ToolCall(name='get_weather', args=(), kwargs={'city': 'Paris', 'days': 3})
>>> parse_call('add(1, [2, 3], flag=true)')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sandbox.calls.InvalidCallError: argument 'true' is not a literal ...
>>> parse_call("add(1,(2, 3), flag=True)").canonical()
'add(1, [2, 3], flag=True)'
>>> parse_call("__import__('os').system('x')")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sandbox.calls.InvalidCallError: the call must be a plain function name, ... type Attribute
"""

from __future__ import annotations

import ast
import json
import keyword
from dataclasses import dataclass, field
from typing import Any


class InvalidCallError(ValueError):
    """The call statement is not a single call of a name with literal JSON arguments."""


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool function: its name, positional and keyword arguments (JSON values)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("__"):
            raise InvalidCallError(f"{self.name!r} is not a valid tool function name")
        for value in (*self.args, *self.kwargs.values()):
            _check_json(value)
        for key in self.kwargs:
            # Any JSON key may name a parameter (OpenAPI's ``user-id``): the guest applies
            # ``**kwargs``, which takes any string key.
            if not isinstance(key, str) or not key or key.startswith("__"):
                raise InvalidCallError(f"{key!r} is not a valid keyword argument name")

    def canonical(self) -> str:
        """A stable text form that parses back to the same call; used in digests and logs.

        Names that are not identifiers go in one trailing ``**{...}`` literal:

        >>> ToolCall("get_user", kwargs={"user-id": "u1", "full": True}).canonical()
        "get_user(full=True, **{'user-id': 'u1'})"
        >>> parse_call(_) == ToolCall("get_user", kwargs={"full": True, "user-id": "u1"})
        True
        """
        parts = [repr(value) for value in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items() if _plain_name(k)]
        other = {k: v for k, v in self.kwargs.items() if not _plain_name(k)}
        if other:
            parts.append(f"**{other!r}")
        return f"{self.name}({', '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``{"name": ..., "args": [...], "kwargs": {...}}``."""
        return {"name": self.name, "args": list(self.args), "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        """Inverse of :meth:`as_dict`."""
        return cls(
            name=str(data["name"]),
            args=tuple(data.get("args", ())),
            kwargs=dict(data.get("kwargs", {})),
        )


def _plain_name(key: str) -> bool:
    """Whether ``key`` can be written as ``key=value`` in a call."""
    return key.isidentifier() and not keyword.iskeyword(key)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _check_json(value: Any) -> None:
    try:
        _dump(value)
    except (TypeError, ValueError) as exc:
        raise InvalidCallError(f"argument {value!r} is not a JSON value: {exc}") from None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidCallError(f"dict keys in arguments must be strings, got {key!r}")
            _check_json(item)
    elif isinstance(value, list):
        for item in value:
            _check_json(item)


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidCallError(
        f"argument {value!r} of type {type(value).__name__} is not a JSON value "
        "(use strings, numbers, booleans, None, lists and dicts)"
    )


def _literal(node: ast.expr) -> Any:
    try:
        return _to_json(ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise InvalidCallError(
            f"argument {ast.unparse(node)!r} is not a literal (only constants, lists, "
            "dicts and tuples of constants are allowed)"
        ) from None


def parse_call(text: str, max_chars: int = 1024 * 1024) -> ToolCall:
    """Parse ``name(literal, key=literal, ...)`` into a :class:`ToolCall`."""
    if len(text) > max_chars:
        raise InvalidCallError(f"the call is {len(text)} characters; the cap is {max_chars}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise InvalidCallError(f"the call is not valid Python: {exc}") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise InvalidCallError(
            f"the call must look like name(arg=value), got an expression of type "
            f"{type(node).__name__}"
        )
    if not isinstance(node.func, ast.Name):
        raise InvalidCallError(
            "the call must be a plain function name, got an expression of type "
            f"{type(node.func).__name__}"
        )
    args: list[Any] = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise InvalidCallError("*args are not allowed in a call")
        args.append(_literal(arg))
    kwargs: dict[str, Any] = {}
    for item in node.keywords:
        if item.arg is not None:
            if item.arg in kwargs:
                raise InvalidCallError(f"argument {item.arg!r} is given twice")
            kwargs[item.arg] = _literal(item.value)
            continue
        # ``**{"user-id": 1}``: only a dict literal, for names that are not identifiers.
        if not isinstance(item.value, ast.Dict):
            raise InvalidCallError("**kwargs must be a dict literal, e.g. **{'user-id': 1}")
        extra = _literal(item.value)
        if any(not isinstance(k, str) for k in extra) or set(extra) & set(kwargs):
            raise InvalidCallError("**{...} keys must be strings not given elsewhere in the call")
        kwargs.update(extra)
    return ToolCall(name=node.func.id, args=tuple(args), kwargs=kwargs)
