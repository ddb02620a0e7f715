"""``astra env``: list, inspect and try the lake's RL environments."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from astra.options import DEFAULT_LAKE, FormatOption, LakeOption, SnapshotOption
from astra.output import OutputFormat, console, print_json, print_rows
from lake import Lake
from schemas import Environment, EnvTool

app = typer.Typer(help="List, inspect and try RL environments.", no_args_is_help=True)


class EnvNotFound(KeyError):
    pass


def _environments(lake: Lake, snapshot: str | None) -> list[Environment]:
    view = lake.read("environments", snapshot=snapshot)
    return [Environment.from_record(r) for r in view.to_arrow().to_pylist()]


def _tools(lake: Lake, snapshot: str | None, ids: set[str]) -> dict[str, EnvTool]:
    view = lake.read("env_tools", snapshot=snapshot)
    return {r["id"]: EnvTool.from_record(r) for r in view.to_arrow().to_pylist() if r["id"] in ids}


def find_environment(lake: Lake, env_id: str, snapshot: str | None) -> Environment:
    """The environment whose id is ``env_id`` or starts with it (unambiguously)."""
    found = [e for e in _environments(lake, snapshot) if e.id.startswith(env_id)]
    if len(found) != 1:
        what = "no environment" if not found else f"{len(found)} environments"
        raise EnvNotFound(f"{what} with an id starting {env_id!r}; list them with `astra env list`")
    return found[0]


@app.command("list")
def env_list(
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Environments with their domain, tools, sub-tasks and whether they keep state."""
    rows = [
        {
            "id": e.id,
            "domain": e.domain,
            "tools": len(e.tool_ids),
            "distractors": len(e.distractor_tool_ids),
            "sub_tasks": len(e.expected),
            "stateful": e.stateful,
            "prompt": e.prompt[:80],
        }
        for e in sorted(_environments(Lake(lake), snapshot), key=lambda e: (e.domain, e.id))
        if domain is None or e.domain == domain
    ]
    print_rows(rows[:limit], fmt, title=f"{len(rows)} environments")


@app.command("show")
def env_show(
    env_id: Annotated[str, typer.Argument(help="Environment id (or a unique prefix).")],
    code: Annotated[bool, typer.Option(help="Print each tool's code too.")] = False,
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """One environment: prompt, tools, distractors, expected answers."""
    opened = Lake(lake)
    env = find_environment(opened, env_id, snapshot)
    tools = _tools(opened, snapshot, set(env.tool_ids) | set(env.distractor_tool_ids))
    if fmt is OutputFormat.JSON:
        print_json(
            {
                "environment": env.model_dump(mode="json"),
                "tools": [tools[i].model_dump(mode="json") for i in env.tool_ids if i in tools],
                "distractors": [
                    tools[i].model_dump(mode="json") for i in env.distractor_tool_ids if i in tools
                ],
            }
        )
        return
    console.print(
        f"[bold]{env.id}[/] ({env.domain}, {'stateful' if env.stateful else 'stateless'})"
    )
    if env.user_background:
        console.print(f"user background: {env.user_background}")
    console.print(f"prompt: {env.prompt}", soft_wrap=True)
    bands = {d.tool_id: d.band for d in env.distractors}
    tool_rows = [
        {
            "tool": tools[i].name,
            "role": "task" if i in env.tool_ids else f"distractor ({bands.get(i, '?')})",
            "verified": tools[i].verified,
            "members": len(tools[i].members),
            "description": tools[i].description[:60],
        }
        for i in [*env.tool_ids, *env.distractor_tool_ids]
        if i in tools
    ]
    print_rows(tool_rows, fmt, title="tools")
    print_rows(
        [
            {"sub_task": a.sub_question_id, "tool": a.tool_name, "answer": a.answer,
             "gold arguments": a.arguments}
            for a in env.expected
        ],
        fmt,
        title="expected answers",
    )  # fmt: skip
    if code:
        for tool_id in env.tool_ids:
            if tool_id in tools:
                console.rule(tools[tool_id].name)
                console.print(tools[tool_id].code, markup=False, highlight=False)


@dataclass
class TryStep:
    call: str
    ok: bool
    value: Any
    solves: list[str]


def _gold_calls(env: Environment) -> list[Any]:
    from sandbox.calls import ToolCall

    return [
        ToolCall(name=a.tool_name, kwargs=json.loads(a.arguments or "{}")) for a in env.expected
    ]


@app.command("try")
def env_try(
    env_id: Annotated[str, typer.Argument(help="Environment id (or a unique prefix).")],
    calls: Annotated[
        list[str] | None,
        typer.Option(
            "--call",
            help="A call statement, e.g. --call 'get_booking(booking_id=\"BK-1\")'; repeat "
            "for a sequence. Without --call or --gold, calls are read from stdin, one per line.",
        ),
    ] = None,
    gold: Annotated[
        bool, typer.Option(help="Replay the environment's gold calls (a solved task).")
    ] = False,
    snapshot: SnapshotOption = None,
    lake: LakeOption = DEFAULT_LAKE,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Call an environment's tools in the sandbox, one session, and see the sub-task score."""
    from sandbox import Environment as SandboxEnvironment
    from sandbox import Sandbox, Session, tools_module
    from schemas.answers import holds_answer
    from training.rewards import REWARDS, outcome_of

    opened = Lake(lake)
    env = find_environment(opened, env_id, snapshot)
    tools = _tools(opened, snapshot, set(env.tool_ids) | set(env.distractor_tool_ids))
    every = [tools[i] for i in [*env.tool_ids, *env.distractor_tool_ids] if i in tools]
    code = tools_module([(tool.name, tool.code) for tool in every])
    statements: Iterable[Any] = [*(calls or []), *(_gold_calls(env) if gold else [])]
    interactive = not statements and sys.stdin.isatty()
    if interactive:
        names = [tools[i].name for i in [*env.tool_ids, *env.distractor_tool_ids] if i in tools]
        console.print(f"prompt: {env.prompt}", soft_wrap=True)
        console.print(f"tools: {', '.join(names)}\nOne call per line; an empty line ends.")
    if not statements:
        statements = _read_calls(interactive)
    steps: list[TryStep] = []
    done: list[tuple[str, Any]] = []
    with Sandbox() as sandbox:
        if env.runtime_digest and sandbox.runtime_digest != env.runtime_digest:
            console.print(
                "[yellow]warning:[/] this sandbox runtime differs from the one that verified "
                "the environment; results may differ"
            )
        session = Session(sandbox, SandboxEnvironment(code=code, initial_state=env.initial_state))
        for statement in statements:
            result = session.call(statement)
            value = result.value if result.ok else {"error": result.error_message}
            text = statement if isinstance(statement, str) else statement.canonical()
            name = text.split("(", 1)[0].strip()
            done.append((name, value))
            solves = [
                a.sub_question_id
                for a in env.expected
                if a.tool_name == name and holds_answer(value, a.answer)
            ]
            steps.append(TryStep(text, result.ok, value, solves))
            if interactive:
                _print_step(steps[-1])
    outcome = outcome_of(env.expected, done)
    scores = {name: round(fn(outcome), 4) for name, fn in REWARDS.items()}
    if fmt is OutputFormat.JSON:
        print_json(
            {
                "environment": env.id,
                "steps": [step.__dict__ for step in steps],
                "solved": outcome.solved,
                "sub_tasks": outcome.total,
                "calls": outcome.calls,
                "rewards": scores,
            }
        )
        return
    if not interactive:
        for step in steps:
            _print_step(step)
    console.print(
        f"solved {outcome.solved}/{outcome.total} sub-tasks with {outcome.calls} calls: "
        + ", ".join(f"{k} {v}" for k, v in scores.items())
    )


def _print_step(step: TryStep) -> None:
    shown = json.dumps(step.value, ensure_ascii=False)
    solved = f" [green]solves {', '.join(step.solves)}[/]" if step.solves else ""
    console.print(f"> {step.call}", markup=False, highlight=False)
    console.print(f"  {shown[:300]}", markup=False, highlight=False)
    if solved:
        console.print(solved)


def _read_calls(interactive: bool) -> Iterator[str]:
    """Call statements from stdin, as they are typed; interactively an empty line ends."""
    while True:
        if interactive:
            console.print("call> ", end="")
        line = sys.stdin.readline()
        if not line or (interactive and not line.strip()):
            return
        if line.strip():
            yield line.strip()


@app.command("check-bfcl")
def env_check_bfcl(
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="BFCL backend class (repeatable); default: TicketAPI, TwitterAPI, MessageAPI, "
            "GorillaFileSystem, MathAPI.",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """External check: BFCL's multi-turn backends as sandbox tools must reproduce BFCL's own
    outputs on its ground-truth calls (code our static checks reject is reported as such)."""
    from jobs.envs.external import check_bfcl_class
    from sandbox import Sandbox

    names = classes or ["TicketAPI", "TwitterAPI", "MessageAPI", "GorillaFileSystem", "MathAPI"]
    with Sandbox() as sandbox:
        checks = [check_bfcl_class(sandbox, name) for name in names]
    rows = [
        {
            "class": c.name,
            "verified": c.verified,
            "entries": c.entries,
            "calls": c.calls,
            "matched": c.matched,
            "why not": "; ".join(c.static_problems)
            or (
                f"{c.mismatches[0]['call']}: BFCL {c.mismatches[0]['bfcl'][:60]}, "
                f"ours {c.mismatches[0]['ours'][:60]}"
                if c.mismatches
                else ""
            ),
        }
        for c in checks
    ]
    version = checks[0].bfcl_version if checks else "?"
    print_rows(rows, fmt, title=f"BFCL multi_turn_base ground truth, bfcl-eval {version}")
