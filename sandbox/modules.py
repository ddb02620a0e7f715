"""One module from many tools, each tool's top-level names kept apart from the others'.

An environment runs as one module in the sandbox, but its tools were written separately
(often by a model): two of them may both define ``TABLE`` or a helper named ``_find``, and
the later would silently replace the earlier. :func:`tools_module` runs each tool's code in
its own function scope and binds only the tool's entry point at module level. ``STATE`` stays
the shared module global: tools read and mutate it, and none may rebind it (an assignment to
``STATE`` at a tool's top level would only bind a name of its own scope).

>>> first = "T = 1\\ndef a():\\n    return T"
>>> second = 'T = 2\\ndef b():\\n    \\"\\"\\"Two\\nlines.\\"\\"\\"\\n    return T'
>>> namespace = {}
>>> exec(tools_module([("a", first), ("b", second)]), namespace)
>>> namespace["a"](), namespace["b"](), namespace["b"].__doc__
(1, 2, 'Two\\nlines.')
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Sequence

_STRING_TOKENS = {tokenize.STRING} | {
    getattr(tokenize, name) for name in ("FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, name)
}


def _indented(code: str) -> str:
    """``code`` one level deeper, leaving the inside of multi-line strings as it is."""
    inside: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type in _STRING_TOKENS and token.end[0] > token.start[0]:
                inside.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # broken code stays broken; the parse check reports it
    lines = code.splitlines()
    return "\n".join(
        line if number in inside or not line.strip() else "    " + line
        for number, line in enumerate(lines, start=1)
    )


def tools_module(tools: Sequence[tuple[str, str]]) -> str:
    """The module source for ``(entry point name, tool code)`` pairs, in order."""
    parts = []
    for index, (name, code) in enumerate(tools):
        if not name.isidentifier():
            raise ValueError(f"tool entry point {name!r} is not a Python identifier")
        scope = f"_astra_scope_{index}"
        body = _indented(code.strip()) or "    pass"
        parts.append(f"def {scope}():\n{body}\n    return {name}\n\n\n{name} = {scope}()\n")
    return "\n\n".join(parts)
