"""Template-realised tasks: typed argument values, queries, augmentations and a rule rubric.

A query is realised from a chain in three parts, each chosen from several templates:

1. a scenario sentence (from the server's title and domain and a sampled situation);
2. the steps, in chain order, each as a *purpose phrase* made from the tool's description
   (first clause, turned into an imperative: "find one-way flights between two airports on a
   given day", never the tool's name);
3. a details list ``label: value; label: value.`` with one concrete value for every parameter
   the user must supply (task-fillable, not provided by an earlier step's output through the
   edge evidence), plus a seeded share of optional ones.

Values come from the parameter's schema (enums) or from typed pools chosen by name and
description pattern (IATA code, city, date, amount, email, person name, phone, IBAN...),
deterministically from the seed. The grammar is fixed so that :func:`parse_query` recovers the
step order and the values from the text alone; the offline oracle agent uses it, and the
rubric uses it to check that every needed value is present.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.synth.chains import (
    is_task_fillable,
    param_schemas,
    param_sources,
    required_params,
)
from schemas import Tool, ToolEdge, ToolServer
from schemas.rewards import JudgeStatus
from schemas.tasks import RubricScore

RUBRIC_CRITERIA = ("query_quality", "scenario_realism", "tool_use_necessity")

IMPERATIVE_VERBS = frozenset(
    [
        "find",
        "return",
        "create",
        "reserve",
        "look",
        "cancel",
        "list",
        "show",
        "save",
        "send",
        "check",
        "get",
        "put",
        "turn",
        "report",
        "open",
        "book",
        "move",
        "search",
        "add",
        "update",
        "delete",
        "remove",
        "fetch",
        "retrieve",
        "compute",
        "convert",
        "register",
        "submit",
        "schedule",
        "calculate",
        "track",
        "transfer",
        "pay",
        "verify",
        "validate",
        "set",
        "change",
        "make",
        "start",
        "stop",
        "close",
        "approve",
        "reject",
        "issue",
        "request",
        "assign",
        "mark",
        "download",
        "upload",
        "read",
        "write",
        "query",
        "translate",
        "estimate",
        "compare",
        "summarize",
        "summarise",
        "resolve",
        "locate",
    ]
)

IATA = ("CDG", "JFK", "LHR", "FRA", "MAD", "LIS", "AMS", "FCO", "BCN", "MUC", "ZRH", "VIE")
CITIES = ("Lisbon", "Paris", "Berlin", "Madrid", "Rome", "Vienna", "Lyon", "Porto", "Munich")
PLACES = ("Eiffel Tower", "Lisbon", "Brandenburg Gate", "Porto", "Sagrada Familia", "Lyon")
FIRST_NAMES = ("Ana", "Lukas", "Marie", "Tomás", "Chloé", "Jonas", "Sofia", "Pedro", "Elena")
LAST_NAMES = ("Silva", "Meyer", "Dubois", "Rossi", "Novak", "García", "Jansen", "Costa")
COUNTRIES = ("FR", "DE", "ES", "IT", "PT", "NL", "AT")
LANGUAGES = ("en", "fr", "de", "es", "pt", "it")
COLORS = ("black", "white", "navy", "red", "grey", "green")
PRODUCTS = ("wireless headphones", "running shoes", "espresso machine", "desk lamp", "backpack")
STREETS = ("Rua Augusta", "Rue de Rivoli", "Kantstraße", "Calle Mayor", "Via Roma")
REASONS = ("change of plans", "duplicate booking", "schedule conflict", "family emergency")
SPECIALTIES = ("DERM", "CARD", "ORTH", "PED", "NEUR", "OPHT")
SITUATIONS = (
    "for a trip next month",
    "for my family",
    "for work this week",
    "before the weekend",
    "for a friend who asked me",
    "as part of moving house",
)
PERSONAS = (
    "busy parent",
    "retired teacher",
    "university student",
    "small-business owner",
    "frequent traveller",
    "night-shift nurse",
)
POLICIES = (
    "Do not do anything that cannot be undone without telling me what it will be first.",
    "Follow the usual company policy: no premium options unless they are free.",
    "Only go ahead if nothing ends up charged twice.",
)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes (unlike ``hash``).

    >>> stable_seed("a", 1) == stable_seed("a", 1) != stable_seed("a", 2)
    True
    """
    text = "\x1f".join(str(p) for p in parts)
    # 63 bits: seeds are stored in signed int64 columns.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def label(param: str) -> str:
    """How a parameter is named in a query: ``departure_date`` -> ``departure date``.

    >>> label("departure_date"), label("maxPrice")
    ('departure date', 'max price')
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", param)
    return re.sub(r"[_\-\s]+", " ", spaced).strip().lower()


def purpose_phrase(tool: Tool) -> str:
    """The tool's description as an imperative clause (first clause, lower-case start).

    >>> t = Tool(server_id="s", name="f", description="Returns the balance; cached.",
    ...          domain="d", source_format="openai", parameters={})
    >>> purpose_phrase(t)
    'return the balance'
    >>> t2 = t.model_copy(update={"description": "Daily forecast at a place."})
    >>> purpose_phrase(t2)
    'get me the daily forecast at a place'
    """
    text = re.split(r"(?<=[.;!?])\s|;", tool.description.strip(), maxsplit=1)[0]
    text = text.strip().rstrip(".;:!? ")
    words = text.split()
    if not words:
        return "help me with this"
    first = words[0].lower()
    if first in IMPERATIVE_VERBS:
        words[0] = first
    elif first.endswith("es") and first[:-2] in IMPERATIVE_VERBS:
        words[0] = first[:-2]
    elif first.endswith("s") and first[:-1] in IMPERATIVE_VERBS:
        words[0] = first[:-1]
    else:
        if not (len(words[0]) > 1 and words[0][1].isupper()):
            words[0] = first
        words = ["get", "me", "the", *words]
    return " ".join(words)


def _date(rng: random.Random, start: dt.date, span_days: int) -> str:
    return (start + dt.timedelta(days=rng.randrange(span_days))).isoformat()


def sample_value(name: str, schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A concrete value for one task-fillable parameter, typed by its schema and name.

    >>> sample_value("cabin", {"enum": ["economy"]}, random.Random(0))
    'economy'
    >>> sample_value("email", {"type": "string"}, random.Random(0)).endswith("@example.com")
    True
    """
    if schema.get("enum"):
        return rng.choice(list(schema["enum"]))
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    n = name.lower()
    description = str(schema.get("description") or "").lower()
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "integer":
        low = int(schema.get("minimum", 1))
        high = int(schema.get("maximum", max(low, 3 if "stop" in n else 10)))
        return rng.randint(low, max(low, high))
    if kind == "number":
        if "lat" in n:
            return round(rng.uniform(36.0, 55.0), 4)
        if "lon" in n or "lng" in n:
            return round(rng.uniform(-9.0, 16.0), 4)
        low = float(schema.get("minimum", 20))
        high = float(schema.get("maximum", 900))
        return round(rng.uniform(low, high), 2) if rng.random() < 0.5 else rng.randint(20, 900)
    if "iata" in description or n in ("origin", "destination") or n.endswith("airport"):
        return rng.choice(IATA)
    if "date" in n or "yyyy-mm-dd" in description:
        if "birth" in n:
            return _date(rng, dt.date(1950, 1, 1), 365 * 54)
        return _date(rng, dt.date(2025, 6, 1), 180)
    if "email" in n:
        local = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}".lower()
        ascii_local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
        return f"{ascii_local}@example.com"
    if n in ("first_name", "given_name"):
        return rng.choice(FIRST_NAMES)
    if n in ("last_name", "family_name", "surname"):
        return rng.choice(LAST_NAMES)
    if n.endswith("name") and ("place" in n or "location" in n):
        return rng.choice(PLACES)
    if n.endswith("name"):
        return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    if "city" in n:
        return rng.choice(CITIES)
    if "country" in n:
        return rng.choice(COUNTRIES)
    if "language" in n or n == "lang":
        return rng.choice(LANGUAGES)
    if "phone" in n:
        return f"+351 9{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
    if "iban" in n:
        return f"PT50{rng.randint(10**20, 10**21 - 1)}"
    if "passport" in n or ("number" in n and "phone" not in n):
        return f"{rng.choice('CKLPX')}{rng.randint(1000000, 9999999)}"
    if "address" in n:
        return f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    if "color" in n or "colour" in n:
        return rng.choice(COLORS)
    if n in ("query", "q", "keywords", "search", "text"):
        return rng.choice(PRODUCTS)
    if "reason" in n or "note" in n or "comment" in n:
        return rng.choice(REASONS)
    if "specialty" in n:
        return rng.choice(SPECIALTIES)
    if "code" in n:
        return f"SAVE{rng.randint(5, 30)}"
    if "reference" in n:
        return f"invoice {rng.randint(1000, 9999)}"
    if "nickname" in n or "alias" in n:
        return rng.choice(("Mum", "Landlord", "Tennis club", "Flatmate"))
    return f"{label(name)} {rng.randint(1, 99)}"


def render_value(value: Any) -> str:
    """How a value is written in a query.

    >>> render_value(True), render_value(12), render_value(3.5), render_value("LIS")
    ('yes', '12', '3.5', 'LIS')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def parse_value(text: str, schema: Mapping[str, Any]) -> Any:
    """The inverse of :func:`render_value`, typed by the parameter's schema.

    >>> parse_value("yes", {"type": "boolean"}), parse_value("3", {"type": "number"})
    (True, 3)
    >>> parse_value("3.5", {"type": "number"}), parse_value("x", {"type": "string"})
    (3.5, 'x')
    """
    kind = schema.get("type")
    text = text.strip()
    try:
        if kind == "boolean":
            return {"yes": True, "no": False}.get(text.lower(), text)
        if kind == "integer":
            return int(text)
        if kind == "number":
            return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    except ValueError:
        return text
    return text


@dataclass(frozen=True)
class Slot:
    """One parameter the user supplies: the step it belongs to and its schema."""

    step: int
    tool: Tool
    param: str
    schema: Mapping[str, Any]
    required: bool


def task_slots(steps: Sequence[Tool], edges: Sequence[ToolEdge]) -> list[Slot]:
    """The task-fillable parameters of each step that no earlier output provides."""
    slots: list[Slot] = []
    for i, tool in enumerate(steps):
        sources = param_sources(steps, i, edges)
        required = set(required_params(tool))
        for name, schema in param_schemas(tool).items():
            if name in sources or not is_task_fillable(name, schema):
                continue
            slots.append(Slot(i, tool, name, schema, name in required))
    return slots


def sample_task_values(
    slots: Sequence[Slot], rng: random.Random, optional_rate: float = 0.4
) -> dict[str, Any]:
    """One value per parameter name (steps sharing a name share the value, as in one story).

    Required slots always get a value, optional ones with probability ``optional_rate``.
    A ``to_``/``end`` date is moved after its ``from_``/``start`` date.
    """
    values: dict[str, Any] = {}
    for slot in slots:
        take = slot.required or rng.random() < optional_rate
        if slot.param in values or not take:
            continue
        value = sample_value(slot.param, slot.schema, rng)
        for _ in range(4):
            if not isinstance(value, str) or value not in values.values():
                break
            value = sample_value(slot.param, slot.schema, rng)
        values[slot.param] = value
    for start, end in (("from_date", "to_date"), ("start_date", "end_date")):
        if start in values and end in values:
            first = dt.date.fromisoformat(str(values[start]))
            values[end] = (first + dt.timedelta(days=rng.randint(3, 40))).isoformat()
    return values


INTROS = (
    "I'm sorting something out with {title} {situation} and could use a hand.",
    "I have a {domain} errand to run {situation}.",
    "Something came up {situation} and I need help with {title}.",
)
STEP_TEMPLATES = (
    ("First, {0}", "; then {0}", "; finally {0}."),
    ("Could you {0}", ", after that {0}", ", and then {0}?"),
    ("Here is the plan: {0}", ". Next, {0}", ". Last, {0}."),
)
DETAIL_LEADS = ("Here are the details", "My details", "For reference")


def _steps_sentence(phrases: Sequence[str], template: int) -> str:
    first, middle, last = STEP_TEMPLATES[template % len(STEP_TEMPLATES)]
    text = first.format(phrases[0])
    for phrase in phrases[1:-1]:
        text += middle.format(phrase)
    if len(phrases) > 1:
        text += last.format(phrases[-1])
    else:
        text += "."
    return text[0].upper() + text[1:]


def realise_query(
    server: ToolServer,
    steps: Sequence[Tool],
    values: Mapping[str, Any],
    rng: random.Random,
    *,
    persona: str | None = None,
    constraint: str | None = None,
) -> str:
    """A user query for ``steps`` with ``values``; templates are picked with ``rng``."""
    intro = rng.choice(INTROS).format(
        title=server.title, domain=server.domain, situation=rng.choice(SITUATIONS)
    )
    if persona is not None:
        intro = f"As a {persona}, I keep things short. " + intro
    parts = [intro, _steps_sentence([purpose_phrase(t) for t in steps], rng.randrange(3))]
    if values:
        details = "; ".join(f"{label(k)}: {render_value(v)}" for k, v in values.items())
        parts.append(f"{rng.choice(DETAIL_LEADS)} — {details}.")
    if constraint is not None:
        parts.append(constraint)
    if persona is not None:
        parts.append("Please keep the answer brief and plain.")
    return " ".join(parts)


@dataclass(frozen=True)
class ParsedQuery:
    """What :func:`parse_query` recovered: the steps in order and the user-given values."""

    steps: list[Tool]
    values: dict[str, Any]


def parse_query(query: str, tools: Sequence[Tool]) -> ParsedQuery:
    """Recover the ordered steps and the values from a query realised by this module."""
    lowered = query.lower()
    matches: list[tuple[int, int, Tool]] = []
    for tool in sorted(tools, key=lambda t: t.id):
        phrase = purpose_phrase(tool).lower()
        for m in re.finditer(re.escape(phrase), lowered):
            matches.append((m.start(), -len(phrase), tool))
    matches.sort(key=lambda m: (m[0], m[1], m[2].id))
    steps: list[Tool] = []
    end = -1
    for start, neg_len, tool in matches:
        if start >= end:
            steps.append(tool)
            end = start - neg_len
    values: dict[str, Any] = {}
    for tool in steps:
        for name, schema in param_schemas(tool).items():
            if name in values or not is_task_fillable(name, schema):
                continue
            pattern = rf"(?:— |; ){re.escape(label(name))}: (.+?)(?=; |\.(?:\s|$)|$)"
            found = re.search(pattern, query, flags=re.IGNORECASE)
            if found:
                values[name] = parse_value(found.group(1), schema)
    return ParsedQuery(steps=steps, values=values)


def names_tools(query: str, tools: Sequence[Tool]) -> list[str]:
    """Tool names that appear in the query as whole words (case-insensitive)."""
    return [
        t.name
        for t in tools
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(t.name)}(?![A-Za-z0-9_])", query, re.I)
    ]


def _value_is_plausible(name: str, schema: Mapping[str, Any], value: Any) -> bool:
    if schema.get("enum"):
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("integer", "number"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if "date" in name.lower():
        try:
            day = dt.date.fromisoformat(str(value))
        except ValueError:
            return False
        return day < dt.date(2010, 1, 1) if "birth" in name.lower() else True
    if "email" in name.lower():
        return bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", str(value)))
    return bool(str(value).strip())


def rubric(
    query: str,
    steps: Sequence[Tool],
    server_tools: Sequence[Tool],
    edges: Sequence[ToolEdge],
    judge_model: str,
) -> list[RubricScore]:
    """Rule-based 1-5 scores for query quality, scenario realism and tool-use necessity.

    - query_quality: 5, minus 2 if a tool name appears, minus 1 if shorter than 12 or longer
      than 250 words, minus 1 per required value missing from the details (floor 1).
    - scenario_realism: 5, minus 2 without a scenario sentence before the steps, minus 1 per
      value that fails its type check (date format, birth date in the past, email shape,
      enum membership) (floor 1).
    - tool_use_necessity: 1 + 4 x the share of steps whose purpose appears in order and whose
      required arguments are present in the query or produced by an earlier step, rounded;
      1 for a single-step task (ASTRA wants more than one tool).
    """
    parsed = parse_query(query, server_tools)
    slots = task_slots(steps, edges)
    missing = [s for s in slots if s.required and s.param not in parsed.values]
    quality = 5 - (2 if names_tools(query, server_tools) else 0)
    words = len(query.split())
    quality -= 1 if words < 12 or words > 250 else 0
    quality = max(1, quality - len(missing))
    first_step = query.lower().find(purpose_phrase(steps[0]).lower()) if steps else -1
    realism = 5 - (2 if first_step < 20 else 0)
    schemas = {s.param: s.schema for s in slots}
    bad = [k for k, v in parsed.values.items() if not _value_is_plausible(k, schemas.get(k, {}), v)]
    realism = max(1, realism - len(bad))
    in_order = [t.id for t in parsed.steps] == [t.id for t in steps]
    covered = 0
    for i, tool in enumerate(steps):
        sources = param_sources(steps, i, edges)
        if all(p in sources or p in parsed.values for p in required_params(tool)) and in_order:
            covered += 1
    necessity = 1 if len(steps) < 2 else round(1 + 4 * covered / len(steps))
    return [
        RubricScore(criterion=c, score=float(s), status=JudgeStatus.OK, judge_model=judge_model)
        for c, s in zip(RUBRIC_CRITERIA, (quality, realism, necessity), strict=True)
    ]


def passes_rubric(scores: Sequence[RubricScore], thresholds: Mapping[str, float]) -> bool:
    """Every thresholded criterion has an ok score at or above its threshold (fail closed).

    >>> ok = RubricScore(criterion="query_quality", score=4.0, status=JudgeStatus.OK)
    >>> passes_rubric([ok], {"query_quality": 4}), passes_rubric([ok], {"scenario_realism": 3})
    (True, False)
    """
    by_name = {s.criterion: s for s in scores}
    for criterion, threshold in thresholds.items():
        score = by_name.get(criterion)
        if score is None or score.status != JudgeStatus.OK or score.score is None:
            return False
        if score.score < threshold:
            return False
    return True
