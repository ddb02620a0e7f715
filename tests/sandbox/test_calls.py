"""Call-statement parsing and limits validation: host-only, no interpreter involved."""

from __future__ import annotations

import pytest

from sandbox import InvalidCallError, Limits, ToolCall, parse_call


def test_keyword_and_positional_literals_are_parsed() -> None:
    call = parse_call("book(1, 'AF1', passenger={'name': 'Ada', 'tags': ('a', 'b')}, ok=None)")
    assert call.name == "book"
    assert call.args == (1, "AF1")
    assert call.kwargs == {"passenger": {"name": "Ada", "tags": ["a", "b"]}, "ok": None}


def test_canonical_form_parses_back_to_the_same_call() -> None:
    call = parse_call("f(  'x', n = -3.5, flags=[True, False], d={'k': 'é'} )")
    assert parse_call(call.canonical()) == call


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "os.system('ls')",
        "f(x=open('/etc/passwd'))",
        "f(x=1 + 2)",
        "f(*args)",
        "f(**kwargs)",
        "f(**dict(a=1))",
        "f(**{'a': 1}, a=2)",
        "f(**{1: 2})",
        "f(**{'__class__': 1})",
        "f(x=lambda: 1)",
        "f(x={1, 2})",
        "f(x=b'bytes')",
        "f(); g()",
        "x = f()",
        "f",
        "f(",
        "__class__()",
    ],
)
def test_anything_but_a_plain_call_with_literals_is_rejected(text: str) -> None:
    with pytest.raises(InvalidCallError):
        parse_call(text)


def test_parameter_names_that_are_not_identifiers_round_trip() -> None:
    """OpenAPI names such as ``user-id`` (and keywords such as ``from``) travel in ``**{}``."""
    call = ToolCall(name="get_user", kwargs={"user-id": "u1", "from": 2, "full": True})
    text = call.canonical()
    assert text == "get_user(full=True, **{'user-id': 'u1', 'from': 2})"
    assert parse_call(text) == call


def test_oversized_call_text_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidCallError, match="cap"):
        parse_call("f(x='" + "a" * 200 + "')", max_chars=100)


def test_tool_call_rejects_non_json_arguments() -> None:
    with pytest.raises(InvalidCallError):
        ToolCall(name="f", kwargs={"x": object()})
    with pytest.raises(InvalidCallError):
        ToolCall(name="f", kwargs={"x": float("nan")})


def test_limits_reject_nonsense_with_a_fix() -> None:
    with pytest.raises(ValueError, match="fuel=2_000_000_000"):
        Limits(fuel=-1)
    with pytest.raises(ValueError, match="at least 32 MiB"):
        Limits(memory_bytes=1024)
