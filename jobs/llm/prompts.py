"""Versioned prompt files and their rendering.

A prompt file in ``jobs/prompts/`` starts with a front matter block of ``key: value`` lines
between two ``---`` lines (``name`` and ``version`` required, ``role`` optional: ``user`` or
``system``), followed by the template. Templates use ``str.format`` placeholders
(``{tool_list}``); literal braces are doubled (``{{``). Rendering with a missing or an
unexpected variable is an error that names both sets, so a prompt and its caller cannot drift
apart silently.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


class PromptError(ValueError):
    """A prompt file that cannot be read, or a render with the wrong variables."""


@dataclass(frozen=True)
class Prompt:
    """One versioned prompt template.

    >>> p = Prompt("greet", "1", "Hello {who}, here is JSON: {{}}")
    >>> p.render({"who": "Ada"})
    'Hello Ada, here is JSON: {}'
    >>> p.key
    'greet@1'
    >>> p.render({})
    Traceback (most recent call last):
    ...
    jobs.llm.prompts.PromptError: prompt greet@1: missing variables ['who'] (given: [])
    """

    name: str
    version: str
    template: str
    role: Literal["user", "system"] = "user"

    @property
    def key(self) -> str:
        """``name@version``, the value recorded as ``prompt_version`` on judged rows."""
        return f"{self.name}@{self.version}"

    @property
    def variables(self) -> frozenset[str]:
        """The placeholder names the template uses."""
        names = set()
        for _, field_name, _, _ in string.Formatter().parse(self.template):
            if field_name is not None:
                if not field_name.isidentifier():
                    raise PromptError(
                        f"prompt {self.key}: placeholder {{{field_name}}} is not a plain name; "
                        "use {name} placeholders and double literal braces"
                    )
                names.add(field_name)
        return frozenset(names)

    def render(self, variables: Mapping[str, Any]) -> str:
        """The template with every placeholder filled; missing or unknown names are errors."""
        expected = self.variables
        missing = sorted(expected - variables.keys())
        if missing:
            raise PromptError(
                f"prompt {self.key}: missing variables {missing} (given: {sorted(variables)})"
            )
        unknown = sorted(variables.keys() - expected)
        if unknown:
            raise PromptError(
                f"prompt {self.key}: unknown variables {unknown}; the template uses "
                f"{sorted(expected)}"
            )
        return self.template.format_map(dict(variables))


def parse_prompt(text: str, source: str = "<string>") -> Prompt:
    """Parse a prompt file's text (front matter, then the template).

    >>> parse_prompt("---\\nname: x\\nversion: 2\\n---\\nSay {word}.\\n").render({"word": "hi"})
    'Say hi.'
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise PromptError(f"{source}: a prompt file starts with a '---' front matter line")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise PromptError(f"{source}: the front matter has no closing '---' line") from None
    meta: dict[str, str] = {}
    for line in lines[1:end]:
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PromptError(f"{source}: front matter line {line!r} is not 'key: value'")
        meta[key.strip()] = value.strip()
    for required in ("name", "version"):
        if not meta.get(required):
            raise PromptError(f"{source}: front matter needs '{required}'")
    unknown = sorted(meta.keys() - {"name", "version", "role"})
    if unknown:
        raise PromptError(
            f"{source}: unknown front matter keys {unknown}; valid: name, version, role"
        )
    role = meta.get("role", "user")
    if role not in ("user", "system"):
        raise PromptError(f"{source}: role must be 'user' or 'system', got {role!r}")
    template = "\n".join(lines[end + 1 :]).strip()
    prompt = Prompt(meta["name"], meta["version"], template, role)  # type: ignore[arg-type]
    _ = prompt.variables  # reject malformed placeholders at load time
    return prompt


@cache
def _load(path: Path) -> Prompt:
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.md"))
        raise PromptError(f"no prompt file {path}; known prompts: {known}")
    prompt = parse_prompt(path.read_text(encoding="utf-8"), str(path))
    if prompt.name != path.stem:
        raise PromptError(f"{path}: front matter name {prompt.name!r} must match the file name")
    return prompt


def load_prompt(name: str, directory: Path | None = None) -> Prompt:
    """The prompt ``name`` from ``directory`` (default: the shipped ``jobs/prompts``).

    >>> load_prompt("chain_vote").name
    'chain_vote'
    """
    return _load((directory or PROMPTS_DIR).resolve() / f"{name}.md")
