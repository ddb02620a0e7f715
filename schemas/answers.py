"""How an expected answer is compared with what a tool returned.

One rule everywhere (verification, RL rewards, ``astra env try``): the answer is normalised
(case, surrounding and repeated whitespace, integral floats) and must equal one scalar
inside the returned JSON value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Scalar = str | int | float | bool


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Scalar]]:
    """Every scalar inside a JSON value with its path (``items[0].id``), in document order.

    >>> list(leaves({"a": 1, "b": [{"c": "x"}], "d": None}))
    [('a', 1), ('b[0].c', 'x')]
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    elif isinstance(value, str | int | float | bool) and value != "":
        yield path, value


def normalise(value: Any) -> str:
    """The comparable text of an answer: case, surrounding space and number form removed.

    >>> normalise("  Paris ") == normalise("paris"), normalise(2.0), normalise(True)
    (True, '2', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split()).lower()


def holds_answer(value: Any, answer: str) -> bool:
    """Whether a returned value contains the normalised answer as one of its values.

    >>> holds_answer({"flights": [{"id": "AF 12"}]}, "af 12")
    True
    >>> holds_answer({"x": "af 123"}, "af 12")
    False
    """
    wanted = normalise(answer)
    if not isinstance(value, dict | list):
        return normalise(value) == wanted if value is not None else False
    return any(normalise(v) == wanted for _, v in leaves(value))
