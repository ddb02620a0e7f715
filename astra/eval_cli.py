"""``astra eval``: benchmark a checkpoint, a model folder or an OpenAI-compatible endpoint;
results go to the lake's ``evals`` table."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from astra.options import DEFAULT_LAKE, FormatOption, LakeOption
from astra.output import OutputFormat, console, print_json, print_rows, rich_progress

app = typer.Typer(
    help="Evaluate models on external benchmarks (BFCL multi-turn); results in the evals table.",
    no_args_is_help=True,
)


class EndpointPolicy:
    """A model behind an OpenAI-compatible server (``vllm serve``, ...), at temperature 0,
    through :class:`jobs.llm.client.OpenAICompatibleBackend`. Calls come from the reply's
    ``tool_calls``, or from ``<tool_call>`` JSON in its text when the server parses none;
    a call whose arguments are not a JSON object is dropped (BFCL ends the turn on it)."""

    deterministic = False

    def __init__(self, backend: Any, max_tokens: int) -> None:
        self.backend = backend
        self.max_tokens = max_tokens

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "policy": "endpoint",
            "model": self.backend.model,
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }

    def respond(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: Any):
        from jobs.llm.client import ChatRequest, parse_hermes_tool_calls
        from training.evals.bfcl import BFCL_RELEASE, Reply

        wire = []
        for message in messages:
            out = dict(message)
            if out.get("tool_calls"):
                out["tool_calls"] = [
                    {
                        **c,
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": json.dumps(c["function"]["arguments"]),
                        },
                    }
                    for c in out["tool_calls"]
                ]
            wire.append(out)
        request = ChatRequest(
            messages=tuple(wire),
            tools=tuple(tools),
            temperature=0.0,
            max_tokens=self.max_tokens,
            prompt_name="bfcl-multi-turn",
            prompt_version=BFCL_RELEASE,
        )
        reply = self.backend.complete(request)
        if not reply.tool_calls and reply.content and "<tool_call>" in reply.content:
            reply = parse_hermes_tool_calls(reply.content)
        calls = []
        for call in reply.tool_calls:
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                continue
            if call.name and isinstance(arguments, dict):
                calls.append((call.name, arguments))
        return Reply(content=reply.content, calls=tuple(calls), raw=reply.content)


def served_model(url: str, timeout_s: float = 10.0) -> str:
    """The first model an OpenAI-compatible server lists at ``/v1/models``."""
    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    try:
        with urllib.request.urlopen(base + "/models", timeout=timeout_s) as response:
            listed = json.loads(response.read())
        return str(listed["data"][0]["id"])
    except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise typer.BadParameter(
            f"could not read the served model from {base}/models ({exc}); give --endpoint-model"
        ) from exc


@app.command("bfcl")
def eval_bfcl(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A causal LM folder (an SFT or RL checkpoint: its checkpoints row and snapshot "
            "are linked), or 'gemma3-270m'.",
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="An OpenAI-compatible server, e.g. http://HOST:8000/v1."),
    ] = None,
    endpoint_model: Annotated[
        str | None,
        typer.Option(help="The endpoint's model name (default: the first it lists)."),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the endpoint's API key, if any.")
    ] = "OPENAI_API_KEY",
    gold: Annotated[
        bool,
        typer.Option(
            "--gold", help="Replay BFCL's ground truth instead of a model (checks the loop)."
        ),
    ] = False,
    categories: Annotated[
        str,
        typer.Option(
            help="Comma-separated: multi_turn_base, multi_turn_miss_func, "
            "multi_turn_miss_param, multi_turn_long_context."
        ),
    ] = "multi_turn_base,multi_turn_miss_func,multi_turn_miss_param,multi_turn_long_context",
    limit: Annotated[
        int | None, typer.Option(help="The first N entries of each category (default: all).")
    ] = None,
    max_turns: Annotated[
        int,
        typer.Option(
            help="Model replies per user turn before the entry is force-terminated (BFCL: 20)."
        ),
    ] = 20,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per reply.")] = 256,
    model_cache: Annotated[
        Path, typer.Option(help="Where prepared models (gemma3-270m) are kept.")
    ] = Path(".cache/models"),
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Run BFCL multi-turn entries through our agent loop against bfcl-eval's executable
    backends and score them with its official checker; one evals row per entry."""
    from jobs.llm.client import OpenAICompatibleBackend
    from lake import Lake
    from training.evals.bfcl import (
        EvalTarget,
        GoldPolicy,
        ModelPolicy,
        accuracy_rows,
        checkpoint_target,
        run_bfcl_eval,
    )
    from training.models import resolve

    chosen = [c for c in (model, endpoint) if c] + (["gold"] if gold else [])
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --model PATH, --endpoint URL or --gold")
    if limit is not None and limit < 1:
        raise typer.BadParameter("--limit must be at least 1")
    opened = Lake(lake)
    policy: Any
    if model:
        folder = resolve(model, model_cache)
        if not Path(folder).is_dir():
            raise typer.BadParameter(f"--model {model}: no such folder")
        target = checkpoint_target(opened, folder)
        with console.status(f"loading {folder}"):
            policy = ModelPolicy(folder, max_new_tokens=max_new_tokens)
    elif endpoint:
        name = endpoint_model or served_model(endpoint)
        key = os.environ.get(api_key_env) if api_key_env else None
        policy = EndpointPolicy(
            OpenAICompatibleBackend(endpoint, name, api_key=key), max_tokens=max_new_tokens
        )
        target = EvalTarget(checkpoint=f"endpoint:{name}@{endpoint}")
    else:
        policy = GoldPolicy()
        target = EvalTarget(checkpoint="bfcl-ground-truth")
    result = run_bfcl_eval(
        opened,
        policy,
        target,
        categories.split(","),
        limit=limit,
        max_steps=max_turns,
        progress=lambda entries: rich_progress(entries, len(entries), "BFCL entries"),
    )
    table = accuracy_rows(result.rows)
    if fmt is OutputFormat.JSON:
        print_json(
            {
                "run_id": result.run_id,
                "reused": result.reused,
                "checkpoint": target.checkpoint,
                "snapshot": target.snapshot,
                "benchmark_version": result.release,
                "accuracy": table,
            }
        )
        return
    title = f"BFCL (bfcl-eval {result.release}) accuracy of {target.checkpoint}"
    print_rows(table, fmt, title=title)
    if fmt is OutputFormat.TABLE:
        note = " (an identical evaluation had run: its rows)" if result.reused else ""
        console.print(f"run {result.run_id}{note}; rows in the evals table (astra report evals)")
