"""What the dedup levels compare: normalised text, and the text each table's rows stand for.

- **Text** is normalised with polars string kernels (Rust, multi-threaded), vectorised over
  a whole column: Unicode NFKC, lower case, every punctuation or symbol character becomes a
  space, runs of whitespace become one space, ends trimmed. Two texts are exact copies when
  their normalised forms are equal.
- **Queries** (``tasks``): the query.
- **Trajectories**: the normalised sequence of tool calls with their arguments (each call as
  ``name`` plus its arguments as canonical JSON, keys sorted), then the user and assistant text.
  Tool results and the system prompt are not part of it.
- **Tool code** (``env_tools``): the syntax tree, with docstrings removed and local names
  canonicalised: function parameters and variables bound inside a function become ``v0, v1,
  ...`` in order of first appearance, names bound at module level by assignment become ``g0,
  g1, ...``. Function and class names, imports, attributes, keywords of calls and constants are
  kept, so renaming variables does not change the key but changing behaviour does. Code that
  does not parse is compared as it is. Code keys are the canonical source itself, not
  punctuation-stripped text: ``a + b`` and ``a - b`` differ.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

DEDUP_TABLES: tuple[str, ...] = ("tasks", "trajectories", "env_tools")
"""The tables the dedup levels read, and the column each is keyed from."""

KEY_COLUMNS: dict[str, list[str]] = {
    "tasks": ["id", "query"],
    "trajectories": ["id", "messages"],
    "env_tools": ["id", "code"],
}


def normalize(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """Normalised texts (nulls become empty strings).

    >>> normalize(["  Hello,   WORLD!! ", "hello world", None]).to_pylist()
    ['hello world', 'hello world', '']
    >>> normalize(["Book a flight: Paris->Rome (2 adults)"]).to_pylist()
    ['book a flight paris rome 2 adults']
    """
    array = (
        texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    )
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    series = pl.Series(array.cast(pa.large_string())).fill_null("")
    # NFKC leaves ASCII as it is: only the other rows pay for it.
    other = pl.Series(pc.invert(pc.fill_null(pc.string_is_ascii(array), True))).arg_true()
    if len(other):
        series = series.scatter(other, series.gather(other).str.normalize("NFKC"))
    normalised = (
        series.str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        # Every whitespace run to one space: runs of two or more, and any lone whitespace
        # that is not a space (the same result as \s+, three times faster on short texts).
        .str.replace_all(r"\s{2,}|[^\S ]", " ")
        .str.strip_chars()
    )
    return normalised.to_arrow().cast(pa.string())


def text_key(normalised: str) -> str:
    """A short stable hash of a normalised text (the ``key`` of an exact cluster).

    >>> text_key("hello world")
    'b94d27b9934d3e08a52e52d7'
    """
    return hashlib.sha256(normalised.encode()).hexdigest()[:24]


# -- trajectories ------------------------------------------------------------------------------


def _canonical_arguments(arguments: str | None) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, ensure_ascii=False)
    except json.JSONDecodeError:
        return arguments or ""


def trajectory_text(messages: Iterable[dict[str, Any]]) -> str:
    """The calls (name and canonical arguments, in order), then the user and assistant text.

    >>> trajectory_text([
    ...     {"role": "user", "content": "Weather in Paris?"},
    ...     {"role": "assistant", "content": None,
    ...      "tool_calls": [{"name": "weather", "arguments": '{"unit": "C", "city": "Paris"}'}]},
    ...     {"role": "tool", "content": '{"t": 20}'},
    ...     {"role": "assistant", "content": "20 degrees."}])
    'calls: weather {"city": "Paris", "unit": "C"} text: Weather in Paris? 20 degrees.'
    """
    calls: list[str] = []
    text: list[str] = []
    for message in messages:
        for call in message.get("tool_calls") or []:
            calls.append(f"{call['name']} {_canonical_arguments(call.get('arguments'))}")
        if message.get("role") in ("user", "assistant") and message.get("content"):
            text.append(str(message["content"]))
    return f"calls: {' | '.join(calls)} text: {' '.join(text)}"


# -- code --------------------------------------------------------------------------------------


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        return body[1:] or [ast.Pass()]
    return body


def _bound_names(nodes: Iterable[ast.AST]) -> list[str]:
    """Names bound by assignment in ``nodes``, in order, without entering nested scopes."""
    found: list[str] = []
    stack = list(reversed(list(nodes)))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if node.id not in found:
                found.append(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name and node.name not in found:
            found.append(node.name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return found


class _Canonicalizer(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.AST:
        args = node.args
        params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
        params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
        body = node.body if isinstance(node.body, list) else [node.body]
        declared = {
            name
            for stmt in ast.walk(ast.Module(body=body, type_ignores=[]))
            if isinstance(stmt, (ast.Global, ast.Nonlocal))
            for name in stmt.names
        }
        local = [n for n in [*params, *_bound_names(body)] if n not in declared]
        names = dict(self.names)
        for index, name in enumerate(dict.fromkeys(local)):
            names[name] = f"v{index}"
        inner = _Canonicalizer(names)
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                arg.arg = names.get(arg.arg, arg.arg)
                arg.annotation = None
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]
        if isinstance(node, ast.Lambda):
            node.body = inner.visit(node.body)
        else:
            node.body = [inner.visit(s) for s in _strip_docstring(node.body)]
            node.decorator_list = [self.visit(d) for d in node.decorator_list]
            node.returns = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return self._function(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = _strip_docstring(node.body)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        if node.name:
            node.name = self.names.get(node.name, node.name)
        return self.generic_visit(node)


def canonical_code(source: str) -> str:
    """Source code with docstrings dropped and local names canonicalised, unparsed again.

    >>> a = "def f(city):\\n    '''Doc.'''\\n    t = city.upper()\\n    return t"
    >>> b = "def f(town):\\n    result = town.upper()  # shout\\n    return result"
    >>> canonical_code(a) == canonical_code(b)
    True
    >>> canonical_code(a) == canonical_code(a.replace("upper", "lower"))
    False
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    tree.body = _strip_docstring(tree.body)
    module_level = [
        n
        for n in _bound_names(tree.body)
        if not any(
            isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and s.name == n
            for s in tree.body
        )
    ]
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    names = {n: f"g{i}" for i, n in enumerate(n for n in module_level if n not in imported)}
    tree = _Canonicalizer(names).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# -- per table ---------------------------------------------------------------------------------


def key_texts(table: str, rows: pa.Table) -> pa.Array:
    """The text each row of ``table`` is compared by, before normalisation."""
    if table == "tasks":
        return rows["query"].combine_chunks()
    if table == "trajectories":
        return pa.array(
            [trajectory_text(m) for m in rows["messages"].to_pylist()], type=pa.string()
        )
    if table == "env_tools":
        return pa.array([canonical_code(c or "") for c in rows["code"].to_pylist()], pa.string())
    raise ValueError(f"dedup reads {list(DEDUP_TABLES)}, not {table!r}")


def normalized_keys(table: str, rows: pa.Table) -> pa.Array:
    """The exact key text of every row (same order as ``rows``): normalised text, or for code
    the canonical source (whose operators and punctuation are meaningful).

    Near and semantic levels tokenise this text by whitespace; code is spaced out first so its
    operators are tokens of their own.
    """
    texts = key_texts(table, rows)
    if table == "env_tools":
        return pc.fill_null(texts, "")
    return normalize(texts)


def tokenizable(table: str, keys: pa.Array) -> pa.Array:
    """``keys`` spaced so whitespace splitting gives words (and, for code, operators).

    >>> tokenizable("env_tools", pa.array(["return a+b"])).to_pylist()
    ['return a + b']
    """
    if table != "env_tools":
        return keys
    spaced = pc.replace_substring_regex(keys, pattern=r"([\pP\pS])", replacement=r" \1 ")
    spaced = pc.replace_substring_regex(spaced, pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(spaced)
