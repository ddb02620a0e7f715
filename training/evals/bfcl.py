"""BFCL multi-turn evaluation: our agent loop against BFCL's executable backends, scored by
bfcl-eval's official multi-turn checker.

What runs:

- **Data**: the entries of the chosen multi-turn categories, loaded by bfcl-eval's own loader
  (``bfcl_eval.utils.load_dataset_entry``: each entry's function docs, with the held-out
  functions of ``multi_turn_miss_func`` taken out) and ground truth
  (``load_ground_truth_entry``), from the installed package. The data release is the
  package's: :data:`BFCL_RELEASE` is pinned (the multi-turn data changed between releases, so
  scores are comparable only within one), recorded as ``benchmark_version`` with a digest of
  the data files.
- **Agent loop** (:func:`run_entry`, ours): per user turn, the policy answers with the
  conversation so far and the entry's tools (OpenAI function format); each tool call is run
  and its result appended as a tool message, until a reply has no tool call or
  ``max_steps`` replies were made (then the entry is force-terminated, as BFCL's inference
  does after its step limit). At a ``miss_func`` turn the held-out functions join the tools
  and the user says BFCL's ``DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC``, as BFCL's own
  inference does.
- **Execution**: the calls run natively, in this process, on BFCL's backend classes
  (``GorillaFileSystem``, ``TwitterAPI``, ``TicketAPI``, ...) through bfcl-eval's own
  executor (``execute_multi_turn_func_call``), not in our sandbox: the checker compares the
  attributes of exactly these Python instances with the ground truth's, and the sandbox does
  not admit most of the classes (``MessageAPI`` imports ``random``, ``GorillaFileSystem``
  ``datetime`` and ``subprocess``, ``MathAPI`` needs ``mpmath``; see
  :mod:`jobs.envs.external`). The code run is BFCL's trusted evaluation code; what the model
  controls is only the call, which must name a public method of an involved class, with
  identifier keywords and JSON literal values (:func:`call_text`): anything else is answered
  with an error and never evaluated, so BFCL's ``eval`` of the call text never sees a model's
  arbitrary expression.
- **Fresh state**: bfcl-eval caches backend instances in a module global keyed by model name
  and entry id. Every entry gets a fresh random tag: inference and scoring use different
  names under it (so scoring starts from the initial state, as BFCL's does), and the tag's
  instances are dropped from the cache once the entry is scored.
- **Scoring**: ``multi_turn_checker`` (state checker and response checker after every turn),
  imported from bfcl-eval and called as its eval runner calls it. The two checks the runner
  itself makes first (a force-terminated entry fails) are repeated here, because importing
  the runner pulls in every model handler's dependencies. A passed entry scores 1.0, a failed
  one 0.0 (BFCL's multi-turn accuracy); an entry whose policy failed (an endpoint error)
  has no verdict.

Policies: :class:`GoldPolicy` replays BFCL's ground truth (a check of the loop and the
scoring: it must pass every entry), :class:`ModelPolicy` generates greedily with a local
Hugging Face model and our chat template (``<tool_call>`` JSON, parsed as in RL rollouts),
and any object with :class:`Policy`'s shape (the CLI's OpenAI-compatible endpoint policy).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from keyword import iskeyword
from pathlib import Path
from typing import Any, Protocol

from lake import Lake
from sandbox.calls import InvalidCallError, parse_call
from sandbox.calls import ToolCall as CallText
from schemas import Checkpoint, Eval
from schemas.formats import bfcl_schema
from training.rollout import TOOL_CALL, parse_tool_calls

BENCHMARK = "bfcl"
BFCL_RELEASE = "2026.3.23"
"""The bfcl-eval release (its data) evaluations are pinned to; the Makefile installs it."""
CATEGORIES = (
    "multi_turn_base",
    "multi_turn_miss_func",
    "multi_turn_miss_param",
    "multi_turn_long_context",
)
"""The multi-turn categories this evaluation runs (the agentic memory and web-search ones need
services and prerequisite conversations it does not set up)."""
BFCL_STEP_LIMIT = 20
"""BFCL's own limit of model replies per user turn (``MAXIMUM_STEP_LIMIT``)."""
_EXECUTOR = "bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils"
_DETAIL_CHARS = 4000
_REPLY_CHARS = 1000


class BFCLError(ValueError):
    """The evaluation cannot run as asked (wrong data release, unknown category, ...)."""


def bfcl_release() -> str:
    """The installed bfcl-eval release; refuses any release but the pinned one."""
    try:
        installed = metadata.version("bfcl-eval")
    except metadata.PackageNotFoundError as exc:
        raise BFCLError(
            f"bfcl-eval is not installed: pip install --no-deps 'bfcl-eval=={BFCL_RELEASE}' "
            "(the Makefile does this)"
        ) from exc
    if installed != BFCL_RELEASE:
        raise BFCLError(
            f"bfcl-eval {installed} is installed but evaluations are pinned to its "
            f"{BFCL_RELEASE} data: pip install --no-deps 'bfcl-eval=={BFCL_RELEASE}'"
        )
    return installed


def check_categories(categories: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown or not chosen:
        raise BFCLError(
            f"unknown BFCL categories {unknown or chosen}; choose from {', '.join(CATEGORIES)}"
        )
    return chosen


def data_digest(categories: Sequence[str]) -> str:
    """sha256 (24 hex) of the question, answer and function-doc files the categories read."""
    import bfcl_eval

    data = Path(bfcl_eval.__file__).parent / "data"
    files = [data / f"BFCL_v4_{c}.json" for c in sorted(categories)]
    files += [data / "possible_answer" / f"BFCL_v4_{c}.json" for c in sorted(categories)]
    files += sorted((data / "multi_turn_func_doc").glob("*.json"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class BFCLEntry:
    """One multi-turn test entry as bfcl-eval's loader gives it, with its ground truth."""

    id: str
    category: str
    turns: list[list[dict[str, Any]]]
    functions: list[dict[str, Any]]
    held_out: dict[int, list[dict[str, Any]]]
    ground_truth: list[list[str]]
    raw: dict[str, Any]

    @property
    def involved_classes(self) -> list[str]:
        return list(self.raw["involved_classes"])

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category


def _entry_number(entry_id: str) -> int:
    return int(entry_id.rsplit("_", 1)[1])


def load_entries(
    categories: Sequence[str], limit: int | None = None, ids: Sequence[str] | None = None
) -> list[BFCLEntry]:
    """The entries of each category in id order: the first ``limit`` of each, or those named."""
    from bfcl_eval.utils import load_dataset_entry, load_ground_truth_entry

    bfcl_release()
    wanted = set(ids or ())
    out = []
    for category in check_categories(categories):
        answers = {a["id"]: a["ground_truth"] for a in load_ground_truth_entry(category)}
        entries = sorted(load_dataset_entry(category), key=lambda e: _entry_number(e["id"]))
        if wanted:
            entries = [e for e in entries if e["id"] in wanted]
        for raw in entries[:limit]:
            held = {int(k): list(v) for k, v in raw.get("missed_function", {}).items()}
            out.append(
                BFCLEntry(
                    id=raw["id"],
                    category=category,
                    turns=raw["question"],
                    functions=list(raw["function"]),
                    held_out=held,
                    ground_truth=answers[raw["id"]],
                    raw=raw,
                )
            )
    missing = wanted - {e.id for e in out}
    if missing:
        raise BFCLError(f"no entries {sorted(missing)} in categories {list(categories)}")
    return out


def openai_tool(doc: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI tool (BFCL's type names mapped to JSON schema).

    >>> openai_tool({"name": "cd", "description": "Change dir.", "parameters":
    ...     {"type": "dict", "properties": {"folder": {"type": "string"}}}})["function"]
    {'name': 'cd', 'description': 'Change dir.', 'parameters': {'type': 'object', \
'properties': {'folder': {'type': 'string'}}}}
    """
    return {
        "type": "function",
        "function": {
            "name": doc["name"],
            "description": doc.get("description", ""),
            "parameters": bfcl_schema(doc.get("parameters") or {"type": "dict", "properties": {}}),
        },
    }


# -- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One model reply: its text (without the tool-call markup) and its tool calls."""

    content: str | None
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    raw: str | None = None


@dataclass(frozen=True)
class StepContext:
    """Where in an entry a reply is asked for (only the gold policy looks)."""

    entry: BFCLEntry
    turn: int
    step: int


class Policy(Protocol):
    """Answers a conversation with tools. ``settings`` are recorded with every result."""

    @property
    def settings(self) -> dict[str, Any]: ...

    @property
    def deterministic(self) -> bool:
        """Whether the same entry always gets the same answers (an identical rerun is then a
        no-op in the lake)."""
        ...

    def respond(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: StepContext
    ) -> Reply: ...


def _methods(class_names: Iterable[str]) -> dict[str, Any]:
    """Public methods of BFCL's backend classes, by name (the executor's own mapping)."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    methods: dict[str, Any] = {}
    for name in class_names:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[name]), name)
        for method_name, method in inspect.getmembers(cls, predicate=inspect.isfunction):
            if not method_name.startswith("_"):
                methods[method_name] = method
    return methods


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """A call in our chat template's format (what a model trained on it writes)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


class GoldPolicy:
    """Replays BFCL's ground truth: a turn's calls in its first reply (written in the chat
    template's ``<tool_call>`` format and parsed back, as a model's would be, positional
    arguments named from the backend method's signature), then a reply without calls."""

    settings: dict[str, Any] = {"policy": "gold"}
    deterministic = True

    def respond(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: StepContext
    ) -> Reply:
        if context.step > 0 or not context.entry.ground_truth[context.turn]:
            return Reply(content="Done.", raw="Done.")
        methods = _methods(context.entry.involved_classes)
        parts = []
        for text in context.entry.ground_truth[context.turn]:
            call = parse_call(text)
            bound = inspect.signature(methods[call.name]).bind(None, *call.args, **call.kwargs)
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            parts.append(tool_call_text(call.name, arguments))
        raw = "\n".join(parts)
        return Reply(content=None, calls=tuple(parse_tool_calls(raw)), raw=raw)


class ModelPolicy:
    """Greedy generation with a local causal LM and its chat template (CPU, or CUDA when
    present); ``<tool_call>`` JSON in the reply is parsed as in RL rollouts."""

    deterministic = True

    def __init__(self, path: str | Path, max_new_tokens: int = 256) -> None:
        import torch

        from training.models import load

        self.path = str(path)
        self.model, self.tokenizer = load(self.path)
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    @property
    def settings(self) -> dict[str, Any]:
        return {"policy": "model", "decoding": "greedy", "max_new_tokens": self.max_new_tokens}

    def respond(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: StepContext
    ) -> Reply:
        import torch

        ids = self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(
                input_ids=torch.tensor([list(ids)], device=device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                eos_token_id=self.end,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        text = self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=False)
        content = TOOL_CALL.sub("", text).replace("<|im_end|>", "").strip() or None
        return Reply(content=content, calls=tuple(parse_tool_calls(text)), raw=text)


# -- the agent loop ---------------------------------------------------------------------------


def call_text(name: str, arguments: dict[str, Any], methods: dict[str, Any]) -> str | None:
    """The call as the text BFCL's executor evaluates, or None when it is not a call of a
    public backend method with identifier keywords and JSON values.

    >>> call_text("cd", {"folder": "docs"}, {"cd": None})
    "cd(folder='docs')"
    >>> call_text("open", {"file": "x"}, {"cd": None}) is None
    True
    >>> call_text("cd", {"a) or (b": 1}, {"cd": None}) is None
    True
    """
    if name not in methods:
        return None
    if not all(isinstance(k, str) and k.isidentifier() and not iskeyword(k) for k in arguments):
        return None
    try:
        return CallText(name=name, kwargs=dict(arguments)).canonical()
    except InvalidCallError:
        return None


INVALID_CALL = "invalid_tool_call__not_evaluated()"
"""What the checker is given for a call that was not a valid backend call: BFCL's executor
answers it with an error, as it would the original."""


@dataclass
class EntryResult:
    """One entry through the loop and the checker. ``turns`` holds, per user turn, each reply
    (its text, cut at 1,000 characters) with its calls: name, arguments, the executed call text
    (None when it was not a valid backend call) and the backend's answer."""

    entry_id: str
    category: str
    passed: bool | None
    turns: list[list[dict[str, Any]]]
    checker: dict[str, Any]
    error: str | None = None
    force_terminated: bool = False
    replies: int = 0

    @property
    def score(self) -> float | None:
        return None if self.passed is None else float(self.passed)


def _executor() -> Any:
    return importlib.import_module(_EXECUTOR)


def _forget(tag: str) -> None:
    """Drop the backend instances cached under ``tag`` from bfcl-eval's module globals."""
    cache = vars(_executor())
    for key in [k for k in cache if k.startswith(tag)]:
        del cache[key]


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _checker_summary(result: dict[str, Any]) -> dict[str, Any]:
    summary = {k: result[k] for k in ("valid", "error_type", "error_message") if k in result}
    extra = {k: v for k, v in result.items() if k not in summary and k != "execution_result"}
    if extra:
        text = json.dumps(_json_safe(extra), sort_keys=True)
        summary["details"] = text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS] + "..."
    return summary


def run_entry(entry: BFCLEntry, policy: Policy, max_steps: int = BFCL_STEP_LIMIT) -> EntryResult:
    """One entry through our agent loop, then bfcl-eval's multi-turn checker."""
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    execute = _executor().execute_multi_turn_func_call
    tag = f"astra_{secrets.token_hex(6)}"
    docs = list(entry.functions)
    methods = _methods(entry.involved_classes)
    messages: list[dict[str, Any]] = []
    decoded: list[list[list[str]]] = []
    log: list[list[dict[str, Any]]] = []
    result = EntryResult(entry.id, entry.category, None, log, {})
    try:
        for turn, said in enumerate(entry.turns):
            if turn in entry.held_out:
                docs.extend(entry.held_out[turn])
                said = [{"role": "user", "content": DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC}]
            messages.extend(dict(m) for m in said)
            tools = [openai_tool(d) for d in docs]
            steps: list[list[str]] = []
            turn_log: list[dict[str, Any]] = []
            for step in range(max_steps):
                reply = policy.respond(messages, tools, StepContext(entry, turn, step))
                result.replies += 1
                ids = [f"call_{turn}_{step}_{i}" for i in range(len(reply.calls))]
                assistant: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
                if reply.calls:
                    assistant["tool_calls"] = [
                        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for i, (n, a) in zip(ids, reply.calls, strict=True)
                    ]
                messages.append(assistant)
                step_log: list[dict[str, Any]] = []
                turn_log.append({"reply": (reply.raw or "")[:_REPLY_CHARS], "calls": step_log})
                if not reply.calls:
                    break
                texts = [call_text(n, a, methods) for n, a in reply.calls]
                valid = [t for t in texts if t is not None]
                outputs, _ = execute(
                    func_call_list=valid,
                    initial_config=entry.raw["initial_config"],
                    involved_classes=entry.involved_classes,
                    model_name=f"{tag}_infer",
                    test_entry_id=entry.id,
                    long_context=entry.long_context,
                    is_evaL_run=False,
                )
                answers = iter(outputs)
                for call_id, (name, arguments), text in zip(ids, reply.calls, texts, strict=True):
                    output = (
                        next(answers)
                        if text is not None
                        else f"Error during execution: {name} is not a function of this task"
                    )
                    messages.append(
                        {"role": "tool", "content": output, "tool_call_id": call_id, "name": name}
                    )
                    step_log.append(
                        {"name": name, "arguments": arguments, "call": text, "result": output}
                    )
                steps.append([t if t is not None else INVALID_CALL for t in texts])
            else:
                result.force_terminated = True
            decoded.append(steps)
            log.append(turn_log)
            if result.force_terminated:
                break
    except Exception as exc:  # the policy failed (e.g. an endpoint error): no verdict
        _forget(tag)
        result.error = f"inference failed: {type(exc).__name__}: {exc}"
        return result
    try:
        if len(decoded) != len(entry.ground_truth):
            # What bfcl-eval's runner checks before the checker: a forced stop fails.
            verdict: dict[str, Any] = {
                "valid": False,
                "error_type": "multi_turn:force_terminated",
                "error_message": f"no reply without a tool call in {max_steps} replies at turn "
                f"{len(decoded) - 1}; {len(decoded)} of {len(entry.ground_truth)} turns run",
            }
        else:
            verdict = multi_turn_checker(
                decoded, entry.ground_truth, entry.raw, entry.category, f"{tag}_score"
            )
    except Exception as exc:  # the official checker raised: no verdict
        result.error = f"checker failed: {type(exc).__name__}: {exc}"
        return result
    finally:
        _forget(tag)
    result.passed = bool(verdict["valid"])
    result.checker = _checker_summary(verdict)
    if not result.passed:
        result.error = f"{verdict.get('error_type')}: {verdict.get('error_message')}"
    return result


def evaluate(
    entries: Sequence[BFCLEntry],
    policy: Policy,
    max_steps: int = BFCL_STEP_LIMIT,
    progress: Callable[[Iterable[BFCLEntry]], Iterable[BFCLEntry]] | None = None,
) -> list[EntryResult]:
    """Every entry through :func:`run_entry`, in order."""
    chosen = progress(entries) if progress else entries
    return [run_entry(e, policy, max_steps) for e in chosen]


# -- results in the lake ----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalTarget:
    """What is evaluated: a checkpoint of the lake (id, snapshot, parents) or a bare name."""

    checkpoint: str
    snapshot: str | None = None
    parent_ids: tuple[str, ...] = ()
    path: str | None = None


def checkpoint_target(lake: Lake, model: str | Path) -> EvalTarget:
    """The ``checkpoints`` row of a model folder: by its path, else (a moved folder) by the
    training run its ``astra_checkpoint.json`` names and the folder's name. A folder the lake
    did not train is evaluated under its path."""
    folder = Path(model).resolve()
    meta_file = folder / "astra_checkpoint.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    rows: list[Checkpoint] = []
    if "checkpoints" in {t.table for t in lake.tables() if t.version is not None}:
        rows = [Checkpoint.from_record(r) for r in lake.read("checkpoints").to_arrow().to_pylist()]
    found = next((c for c in rows if c.path == str(folder)), None)
    if found is None and meta.get("run_id"):
        found = next(
            (
                c
                for c in rows
                if c.training_run == meta["run_id"] and Path(c.path).name == folder.name
            ),
            None,
        )
    if found is None:
        return EvalTarget(checkpoint=str(folder), snapshot=meta.get("snapshot"), path=str(folder))
    return EvalTarget(
        checkpoint=found.id,
        snapshot=meta.get("snapshot") or found.snapshot,
        parent_ids=(found.id,),
        path=str(folder),
    )


@dataclass
class BFCLEvalResult:
    run_id: str
    reused: bool
    target: EvalTarget
    release: str
    rows: list[Eval]
    results: list[EntryResult] = field(default_factory=list)


def eval_rows(
    target: EvalTarget,
    results: Sequence[EntryResult],
    release: str,
    digest: str,
    settings: dict[str, Any],
) -> list[Eval]:
    return [
        Eval(
            checkpoint=target.checkpoint,
            snapshot=target.snapshot,
            benchmark=BENCHMARK,
            benchmark_version=release,
            category=r.category,
            entry_id=r.entry_id,
            passed=r.passed,
            score=r.score,
            details={
                "data_digest": digest,
                "turns": _json_safe(r.turns),
                "checker": r.checker,
                "force_terminated": r.force_terminated,
                "replies": r.replies,
                "model_path": target.path,
            },
            error=r.error,
            settings=settings,
            parent_ids=list(target.parent_ids),
        )
        for r in results
    ]


def run_bfcl_eval(
    lake: Lake,
    policy: Policy,
    target: EvalTarget,
    categories: Sequence[str],
    limit: int | None = None,
    max_steps: int = BFCL_STEP_LIMIT,
    entry_ids: Sequence[str] | None = None,
    progress: Callable[[Iterable[BFCLEntry]], Iterable[BFCLEntry]] | None = None,
) -> BFCLEvalResult:
    """Evaluate ``policy`` on BFCL and write one ``evals`` row per entry in one lake run.

    The run's params name the target, categories, limit, settings and data release; its
    fingerprint is the data digest; a checkpoint's table version is an input. With a
    deterministic policy an identical evaluation is a no-op that returns the earlier rows.
    """
    release = bfcl_release()
    chosen = check_categories(categories)
    if max_steps < 1:
        raise BFCLError("max steps per turn must be at least 1")
    digest = data_digest(chosen)
    settings = {**policy.settings, "max_steps_per_turn": max_steps}
    params = {
        "checkpoint": target.checkpoint,
        "path": target.path,
        "categories": chosen,
        "limit": limit,
        "entry_ids": sorted(entry_ids or ()),
        "settings": settings,
        "release": release,
    }
    inputs = {}
    if target.parent_ids:
        inputs["checkpoints"] = lake.read("checkpoints").version
    entries = load_entries(chosen, limit, entry_ids)
    with lake.run(
        "eval-bfcl",
        params,
        seed=0,
        inputs=inputs,
        fingerprint=digest,
        idempotent=policy.deterministic,
    ) as run:
        if run.reused:
            stored = lake.read("evals").to_arrow(filter=f"run_id = '{run.run_id}'").to_pylist()
            rows = [Eval.from_record(r) for r in stored]
            return BFCLEvalResult(run.run_id, True, target, release, rows)
        results = evaluate(entries, policy, max_steps, progress)
        rows = eval_rows(target, results, release, digest, settings)
        run.upsert("evals", Eval.to_arrow(rows))
        run.metrics.update(summary_metrics(rows))
    return BFCLEvalResult(run.run_id, False, target, release, rows, results)


def summary_metrics(rows: Sequence[Eval]) -> dict[str, Any]:
    """Entries, passed and accuracy per category (accuracy over entries with a verdict)."""
    out: dict[str, Any] = {}
    for row in accuracy_rows(rows):
        out[f"{row['category']}_accuracy"] = row["accuracy"]
    out["entries"] = len(rows)
    return out


def accuracy_rows(rows: Sequence[Eval]) -> list[dict[str, Any]]:
    """Accuracy per category (and overall) of one evaluation's rows: passed over entries with
    a verdict (see :func:`training.evals.report.compare`).

    >>> r = lambda c, p: Eval(checkpoint="m", benchmark="bfcl", benchmark_version="v",
    ...     category=c, entry_id=f"{c}_{p}", passed=p, score=float(p), details={})
    >>> [x["accuracy"] for x in accuracy_rows([r("a", True), r("a", False), r("b", True)])]
    [0.5, 1.0, 0.667]
    """
    from training.evals.report import compare

    keys = ("category", "entries", "passed", "no_verdict", "accuracy")
    return [{k: line[k] for k in keys} for line in compare(rows)]


def _tag_pattern() -> re.Pattern[str]:
    return re.compile(r"^astra_[0-9a-f]{12}_")


def cached_instances() -> int:
    """How many backend instances of ours bfcl-eval's executor still caches (0 after scoring)."""
    pattern = _tag_pattern()
    return sum(1 for k in vars(_executor()) if pattern.match(k))
