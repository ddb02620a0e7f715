"""Command line for the sandbox (mounted as ``astra sandbox``): ``run`` and ``bench``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox.calls import InvalidCallError
from sandbox.core import Sandbox
from sandbox.policy import Limits
from sandbox.result import ExecutionResult
from sandbox.runtime import RuntimeBuildError
from sandbox.session import Environment, ReplayMismatchError, Session

app = typer.Typer(
    help="Run untrusted Python tool code in the deterministic Wasmtime sandbox.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class OutputFormat(StrEnum):
    """How ``run`` prints its result."""

    text = "text"
    json = "json"


_DEFAULTS = Limits()


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _print_text(result: ExecutionResult, console: Console) -> None:
    status = "[green]ok[/green]" if result.ok else f"[red]{result.error_type}[/red]"
    console.print(f"status: {status}", highlight=False)
    if result.ok:
        console.print(f"value: {result.value_json}", highlight=False, markup=False)
    else:
        console.print(f"error: {result.error_message}", highlight=False, markup=False)
    if result.stdout:
        console.print("stdout:", highlight=False)
        console.print(result.stdout.rstrip("\n"), highlight=False, markup=False)
    if result.stderr:
        console.print("stderr:", highlight=False)
        console.print(result.stderr.rstrip("\n"), highlight=False, markup=False)
    flags = [
        name
        for name in ("timed_out", "fuel_exhausted", "memory_exceeded", "output_truncated")
        if getattr(result, name)
    ]
    console.print(
        f"fuel: {result.fuel_used:,}  time: {result.duration_s * 1000:.2f} ms"
        + (f"  flags: {', '.join(flags)}" if flags else ""),
        highlight=False,
    )
    console.print(f"runtime: {result.runtime_digest}", highlight=False)
    console.print(f"result: {result.result_digest}", highlight=False)


@app.command("run")
def run_command(
    file: Annotated[
        Path, typer.Argument(help="Python file with the tool functions (untrusted code).")
    ],
    call: Annotated[
        str,
        typer.Option(
            "--call", help="One call of a tool function with literal arguments, e.g. 'f(x=1)'."
        ),
    ],
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for the virtual clock, random, uuid, urandom.")
    ] = 0,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Print as readable text or as JSON.")
    ] = OutputFormat.text,
    state_file: Annotated[
        Path | None,
        typer.Option("--state", help="JSON file with the initial STATE dict for the tool."),
    ] = None,
    fuel: Annotated[
        int, typer.Option("--fuel", help="Fuel (CPU) budget of the call.")
    ] = _DEFAULTS.fuel,
    deadline_s: Annotated[
        float, typer.Option("--deadline", help="Wall-clock deadline of the call in seconds.")
    ] = _DEFAULTS.deadline_s,
    memory_mb: Annotated[
        int, typer.Option("--memory-mb", help="Memory cap of the guest in MiB.")
    ] = _DEFAULTS.memory_bytes // (1024 * 1024),
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Artifact cache (default ~/.cache/astra/sandbox)."),
    ] = None,
) -> None:
    """Run FILE's tool code in the sandbox, call one function, and print the result.

    Exits 0 when the call succeeded, 1 when the tool failed (the result says why), 2 on a
    usage error.
    """
    try:
        code = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {exc}") from None
    state = None
    if state_file is not None:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _fail(f"cannot read the state file {state_file}: {exc}") from None
        if not isinstance(state, dict):
            raise _fail(f"the state file {state_file} must hold a JSON object")
    try:
        limits = Limits(fuel=fuel, deadline_s=deadline_s, memory_bytes=memory_mb * 1024 * 1024)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        with Sandbox(cache_dir, limits) as sandbox:
            result = sandbox.run(code, call, seed=seed, state=state)
    except (RuntimeBuildError, OSError, ValueError) as exc:
        raise _fail(f"the sandbox could not start: {exc}") from None
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_text(result, Console())
    raise typer.Exit(code=0 if result.ok else 1)


@app.command("session")
def session_command(
    file: Annotated[
        Path, typer.Argument(help="Python file with the tool functions (untrusted code).")
    ],
    calls: Annotated[
        list[str],
        typer.Option(
            "--call", help="A call, e.g. 'book(flight=\"AF1\")'; repeat it for a sequence."
        ),
    ],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the session.")] = 0,
    state_file: Annotated[
        Path | None,
        typer.Option("--state", help="JSON file with the initial STATE dict for the tool."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Artifact cache (default ~/.cache/astra/sandbox)."),
    ] = None,
) -> None:
    """Apply a sequence of calls whose effects on STATE persist, then replay the call log from
    the initial state and check that every result and the final state digest are identical."""
    try:
        code = file.read_text(encoding="utf-8")
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"cannot read the tool or state file: {exc}") from None
    if not isinstance(state, dict):
        raise _fail("the state file must hold a JSON object")
    console = Console()
    try:
        with Sandbox(cache_dir) as sandbox:
            environment = Environment(code=code, initial_state=state, name=file.stem)
            session = Session(sandbox, environment, seed)
            table = Table("#", "call", "status", "value or error", "result digest")
            for index, call in enumerate(calls):
                result = session.call(call)
                shown = (
                    result.value_json
                    if result.ok
                    else f"{result.error_type}: {result.error_message}"
                )
                status = "ok" if result.ok else "failed"
                table.add_row(str(index), call, status, shown or "", result.result_digest[:23])
            console.print(table)
            console.print(f"final state: {session.state_json}", highlight=False, markup=False)
            console.print(f"state digest: {session.state_digest}", highlight=False)
            replayed, _ = Session.replay(sandbox, environment, session.log, seed)
    except ReplayMismatchError as exc:
        raise _fail(f"replay diverged: {exc}") from None
    except (RuntimeBuildError, InvalidCallError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    same = replayed.state_digest == session.state_digest
    console.print(
        "replay from the call log: " + ("identical results and state" if same else "DIFFERENT"),
        highlight=False,
    )
    raise typer.Exit(code=0 if same else 1)


@app.command("bench")
def bench_command(
    calls: Annotated[int, typer.Option("--calls", min=10, help="Calls per measurement.")] = 300,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes for the pool run.")
    ] = 2,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Artifact cache (default ~/.cache/astra/sandbox)."),
    ] = None,
) -> None:
    """Print calls/s of a small tool: native exec, one sandbox process, and a worker pool."""
    from sandbox.bench import bench_native_exec, bench_pool, bench_sandbox_calls

    console = Console()
    try:
        with Sandbox(cache_dir) as sandbox:
            single = bench_sandbox_calls(sandbox, calls)
            digest = sandbox.runtime_digest
        pool = bench_pool(workers, calls * workers, cache_dir)
    except (RuntimeBuildError, OSError, ValueError) as exc:
        raise _fail(f"the sandbox could not start: {exc}") from None
    native = bench_native_exec(calls)
    table = Table(title=f"sandbox bench (runtime {digest[:19]}…)")
    for column in ("mode", "calls/s", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    table.add_row(
        "native exec (no isolation)",
        f"{native['calls_per_s']:.0f}",
        f"{native['p50_ms']:.3f}",
        f"{native['p95_ms']:.3f}",
    )
    table.add_row(
        "sandbox, 1 process",
        f"{single['calls_per_s']:.0f}",
        f"{single['p50_ms']:.3f}",
        f"{single['p95_ms']:.3f}",
    )
    table.add_row(f"sandbox pool, {workers} workers", f"{pool['calls_per_s']:.0f}", "", "")
    console.print(table)
