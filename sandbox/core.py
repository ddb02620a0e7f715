"""The host side of one sandbox: a wasmtime engine, the compiled interpreter, and ``run``.

Every call gets a fresh component instance (a copy-on-write image of the pre-initialised
interpreter snapshot) in a fresh ``Store`` with its own fuel, memory cap and epoch deadline;
the store is closed after the call, so nothing survives from one call to the next.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wasmtime import Config, Engine, Store, WasmtimeError
from wasmtime.component import Component, Linker

from sandbox.calls import InvalidCallError, ToolCall, parse_call
from sandbox.policy import Limits
from sandbox.result import ExecutionResult, canonical_json, result_digest, sha256_text
from sandbox.runtime import (
    RuntimeArtifact,
    artifact_from_file,
    default_cache_dir,
    engine_fingerprint,
    ensure_runtime,
    load_compiled,
)

#: Seconds between epoch ticks: the resolution of the wall-clock deadline.
EPOCH_TICK_S = 0.01
MAX_SEED = 2**63 - 1
#: Distinct tool sources whose compiled bytecode a Sandbox keeps.
BYTECODE_CACHE_SIZE = 256
_ENGINE_SETTINGS = "consume_fuel=1;epoch_interruption=1;nan_canonicalization=1"


def _make_engine() -> Engine:
    config = Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    # Canonical NaN bit patterns: float results cannot depend on the host CPU.
    config.cranelift_nan_canonicalization = True
    return Engine(config)


class _EpochTicker:
    """A daemon thread that advances the engine's epoch every ``EPOCH_TICK_S`` seconds."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sandbox-epoch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(EPOCH_TICK_S):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def _trap_summary(exc: WasmtimeError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("wasm trap:"):
            return line
    return lines[-1] if lines else type(exc).__name__


class Sandbox:
    """Runs untrusted Python tool code in a fresh WASI CPython instance per call.

    ``cache_dir`` holds the interpreter artifact and its compiled form (default
    ``~/.cache/astra/sandbox``). ``runtime_path`` runs a given component file instead of the
    one built from this package's guest sources; ``expected_runtime_digest`` refuses any other
    artifact (use it to reproduce results recorded with an old runtime). Loading happens on
    first use or on :meth:`load`. A ``Sandbox`` serves one thread; use
    :class:`sandbox.pool.SandboxPool` for parallelism.
    """

    def __init__(
        self,
        cache_dir: Path | str | None = None,
        limits: Limits | None = None,
        *,
        runtime_path: Path | str | None = None,
        expected_runtime_digest: str | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.limits = limits if limits is not None else Limits()
        self._runtime_path = Path(runtime_path) if runtime_path is not None else None
        self._expected_digest = expected_runtime_digest
        self._artifact: RuntimeArtifact | None = None
        self._engine: Engine | None = None
        self._component: Component | None = None
        self._linker: Linker | None = None
        self._ticker: _EpochTicker | None = None
        self._lock = threading.Lock()
        self._bytecode_cache: OrderedDict[str, str | None] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> Sandbox:
        """Build or fetch the artifact and load its compiled form (idempotent)."""
        with self._lock:
            if self._component is not None:
                return self
            if self._runtime_path is not None:
                artifact = artifact_from_file(self._runtime_path, self._expected_digest)
            else:
                artifact = ensure_runtime(self.cache_dir)
                if self._expected_digest is not None and artifact.digest != self._expected_digest:
                    raise ValueError(
                        f"the sandbox runtime is {artifact.digest}, expected "
                        f"{self._expected_digest}; pass runtime_path= to the archived component"
                    )
            engine = _make_engine()
            fingerprint = engine_fingerprint(_ENGINE_SETTINGS)
            self._component = load_compiled(engine, artifact, self.cache_dir, fingerprint)
            self._engine = engine
            self._linker = Linker(engine)
            self._artifact = artifact
            self._ticker = _EpochTicker(engine)
            return self

    def close(self) -> None:
        """Stop the epoch thread and drop the compiled component."""
        with self._lock:
            if self._ticker is not None:
                self._ticker.stop()
            self._ticker = None
            self._component = None
            self._linker = None
            self._engine = None

    def __enter__(self) -> Sandbox:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def runtime_digest(self) -> str:
        """``sha256:<hex>`` of the interpreter component (loads it if needed)."""
        self.load()
        assert self._artifact is not None
        return self._artifact.digest

    # -- calls -----------------------------------------------------------------------------
    def run(
        self,
        code: str,
        call: str | ToolCall,
        seed: int = 0,
        state: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        """Execute ``code`` then one call statement such as ``"get_weather(city='Paris')"``.

        ``state`` initialises the module-level ``STATE`` dict the tool may read and mutate
        (``{}`` when omitted); the state after a successful call is in ``result.state``.
        A call string that is not a single call of a name with literal arguments gives a
        result with ``error_type == "InvalidCall"`` and nothing is executed.
        """
        if isinstance(call, ToolCall):
            return self._execute(code, call, seed, state)
        try:
            parsed = parse_call(call, max_chars=self.limits.max_code_bytes)
        except InvalidCallError as exc:
            return self._rejected(code, call, seed, "InvalidCall", str(exc))
        return self._execute(code, parsed, seed, state)

    def call_function(
        self,
        code: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        seed: int = 0,
        state: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        """Execute ``code`` then ``name(**args)`` with JSON keyword arguments."""
        text = f"{name}(**{args!r})"
        try:
            call = ToolCall(name=name, kwargs=dict(args or {}))
        except InvalidCallError as exc:
            return self._rejected(code, text, seed, "InvalidCall", str(exc))
        return self._execute(code, call, seed, state)

    def _rejected(
        self,
        code: str,
        call: str,
        seed: int,
        error_type: str,
        message: str,
    ) -> ExecutionResult:
        """A result for input refused on the host: nothing ran, no fuel was used."""
        runtime = self.runtime_digest
        outcome = {"ok": False, "error_type": error_type, "error_message": message}
        digest = result_digest(
            code=code,
            call=call,
            seed=seed if isinstance(seed, int) else 0,
            limits=self._digest_limits(),
            state_in=None,
            runtime_digest=runtime,
            outcome=outcome,
        )
        return ExecutionResult.rejected(
            error_type, message, runtime_digest=runtime, result_digest=digest
        )

    def _digest_limits(self) -> dict[str, Any]:
        limits = self.limits.as_dict()
        limits.pop("deadline_s")  # a wall-clock backstop, not part of the deterministic result
        return limits

    def _execute(
        self, code: str, call: ToolCall, seed: int, state: Mapping[str, Any] | None
    ) -> ExecutionResult:
        limits = self.limits
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
            return self._rejected(
                code, call.canonical(), 0, "InvalidSeed", f"seed must be 0..{MAX_SEED}"
            )
        if not isinstance(code, str):
            return self._rejected("", call.canonical(), seed, "InvalidCode", "code must be a str")
        if len(code.encode("utf-8", "surrogatepass")) > limits.max_code_bytes:
            return self._rejected(
                code,
                call.canonical(),
                seed,
                "CodeTooLarge",
                f"the tool code exceeds max_code_bytes={limits.max_code_bytes}",
            )
        args_json = canonical_json([call.args, call.kwargs])
        if len(args_json) > limits.max_code_bytes:
            return self._rejected(
                code,
                call.canonical(),
                seed,
                "ArgumentsTooLarge",
                f"the call arguments exceed max_code_bytes={limits.max_code_bytes} as JSON",
            )
        state_in: str | None = None
        if state is not None:
            try:
                state_in = canonical_json(dict(state))
            except (TypeError, ValueError) as exc:
                return self._rejected(code, call.canonical(), seed, "InvalidState", f"state: {exc}")
            if len(state_in) > limits.max_state_bytes:
                return self._rejected(
                    code,
                    call.canonical(),
                    seed,
                    "StateTooLarge",
                    f"the state exceeds max_state_bytes={limits.max_state_bytes} as JSON",
                )
        request = json.dumps(
            {
                "code": code,
                "bytecode": self._bytecode(code),
                "function": call.name,
                "args": list(call.args),
                "kwargs": call.kwargs,
                "seed": seed,
                # None: the code's own module-level STATE (or {}) stands; a dict replaces it.
                "state": json.loads(state_in) if state_in is not None else None,
                "max_output_chars": limits.max_output_chars,
                "max_value_bytes": limits.max_value_bytes,
                "max_state_bytes": limits.max_state_bytes,
                "max_error_chars": limits.max_error_chars,
            },
            ensure_ascii=True,
        )
        response_text, trap, fuel_used, duration = self._invoke(request)
        return self._assemble(code, call, seed, state_in, response_text, trap, fuel_used, duration)

    def _bytecode(self, code: str) -> str | None:
        """The guest-compiled, marshalled code object for ``code`` (cached per process).

        Every run with the same source therefore takes the same path (load bytecode, never
        compile), so fuel use does not depend on whether this process has seen the code
        before. None when the source does not compile; the run then reports the error.
        """
        key = sha256_text(code)
        if key in self._bytecode_cache:
            self._bytecode_cache.move_to_end(key)
            return self._bytecode_cache[key]
        response, trap, _fuel, _duration = self._invoke(
            json.dumps({"compile_only": True, "code": code}, ensure_ascii=True)
        )
        if trap is not None:
            return None  # fuel or deadline while compiling: the run reports it; retry next time
        bytecode: str | None = None
        if response is not None:
            try:
                data = json.loads(response)
            except ValueError:
                data = {}
            if isinstance(data, dict) and data.get("ok") is True:
                candidate = data.get("bytecode")
                bytecode = candidate if isinstance(candidate, str) else None
        self._bytecode_cache[key] = bytecode
        if len(self._bytecode_cache) > BYTECODE_CACHE_SIZE:
            self._bytecode_cache.popitem(last=False)
        return bytecode

    def _invoke(self, request: str) -> tuple[str | None, str | None, int, float]:
        self.load()
        assert self._engine is not None and self._linker is not None
        assert self._component is not None
        limits = self.limits
        store = Store(self._engine)
        store.set_fuel(limits.fuel)
        store.set_limits(memory_size=limits.memory_bytes)
        store.set_epoch_deadline(math.ceil(limits.deadline_s / EPOCH_TICK_S) + 1)
        response: str | None = None
        trap: str | None = None
        start = time.perf_counter()
        try:
            instance = self._linker.instantiate(store, self._component)
            func = instance.get_func(store, "run")
            if func is None:
                raise WasmtimeError("the runtime component exports no 'run' function")
            response = func(store, request)
            func.post_return(store)
        except WasmtimeError as exc:
            trap = _trap_summary(exc)
        finally:
            duration = time.perf_counter() - start
            fuel_used = limits.fuel - store.get_fuel()
            store.close()
        return response, trap, fuel_used, duration

    def _assemble(
        self,
        code: str,
        call: ToolCall,
        seed: int,
        state_in: str | None,
        response_text: str | None,
        trap: str | None,
        fuel_used: int,
        duration: float,
    ) -> ExecutionResult:
        limits = self.limits
        timed_out = fuel_exhausted = False
        if trap is not None:
            fuel_exhausted = "all fuel consumed" in trap or fuel_used >= limits.fuel
            timed_out = "interrupt" in trap and not fuel_exhausted
            if fuel_exhausted:
                error_type, message = "FuelExhausted", f"the call used all {limits.fuel} fuel"
            elif timed_out:
                error_type = "Timeout"
                message = f"the call passed its {limits.deadline_s} s deadline"
            elif "call stack exhausted" in trap:
                error_type, message = "StackOverflow", "the wasm call stack is exhausted"
            else:
                error_type, message = "WasmTrap", trap
            fields: dict[str, Any] = {
                "ok": False,
                "value_json": None,
                "stdout": "",
                "stderr": "",
                "error_type": error_type,
                "error_message": message,
                "output_truncated": False,
                "state_json": None,
            }
        else:
            fields = _validate_response(response_text, limits)
        value = fields.get("value")
        state_json = fields.get("state_canonical")
        memory_exceeded = fields["error_type"] == "MemoryError"
        outcome = {
            "ok": fields["ok"],
            "value_json": fields["value_json"],
            "stdout": fields["stdout"],
            "stderr": fields["stderr"],
            "error_type": fields["error_type"],
            "error_message": fields["error_message"],
            "output_truncated": fields["output_truncated"],
            "fuel_exhausted": fuel_exhausted,
            "memory_exceeded": memory_exceeded,
            "fuel_used": fuel_used,
            "state": None if state_json is None else sha256_text(state_json),
        }
        runtime = self.runtime_digest
        digest = result_digest(
            code=code,
            call=call.canonical(),
            seed=seed,
            limits=self._digest_limits(),
            state_in=state_in,
            runtime_digest=runtime,
            outcome=outcome,
        )
        return ExecutionResult(
            ok=fields["ok"],
            value=value,
            value_json=fields["value_json"],
            stdout=fields["stdout"],
            stderr=fields["stderr"],
            error_type=fields["error_type"],
            error_message=fields["error_message"],
            timed_out=timed_out,
            fuel_exhausted=fuel_exhausted,
            memory_exceeded=memory_exceeded,
            output_truncated=fields["output_truncated"],
            fuel_used=fuel_used,
            duration_s=duration,
            runtime_digest=runtime,
            result_digest=digest,
            state_json=state_json,
        )


def _validate_response(text: str | None, limits: Limits) -> dict[str, Any]:
    """Check the guest's answer: it is untrusted data, so every field is checked and capped."""

    def broken(reason: str) -> dict[str, Any]:
        return {
            "ok": False,
            "value_json": None,
            "stdout": "",
            "stderr": "",
            "error_type": "SandboxProtocolError",
            "error_message": f"the guest returned a malformed response: {reason}",
            "output_truncated": False,
            "state_json": None,
        }

    if text is None:
        return broken("no response")
    budget = (
        4 * limits.max_output_chars * 2
        + 4 * limits.max_value_bytes
        + 4 * limits.max_state_bytes
        + 8 * limits.max_error_chars
        + 4096
    )
    if len(text) > budget:
        return broken(f"{len(text)} characters")
    try:
        data = json.loads(text)
    except ValueError as exc:
        return broken(str(exc))
    if not isinstance(data, dict):
        return broken("not an object")
    fields: dict[str, Any] = {
        "ok": data.get("ok") is True,
        "output_truncated": data.get("output_truncated") is True,
    }
    for name, cap in (
        ("stdout", limits.max_output_chars),
        ("stderr", limits.max_output_chars),
        ("error_message", limits.max_error_chars),
        ("error_type", 200),
        ("value_json", limits.max_value_bytes),
        ("state_json", limits.max_state_bytes),
    ):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            return broken(f"{name} is not a string")
        if value is not None and len(value) > cap:
            if name in ("stdout", "stderr", "error_message"):
                value = value[:cap]
                fields["output_truncated"] = True
            else:
                return broken(f"{name} exceeds its cap")
        fields[name] = value
    fields["stdout"] = fields["stdout"] or ""
    fields["stderr"] = fields["stderr"] or ""
    try:
        if fields["value_json"] is not None:
            fields["value"] = json.loads(fields["value_json"])
        if fields["state_json"] is not None:
            state = json.loads(fields["state_json"])
            if not isinstance(state, dict):
                return broken("STATE is not a JSON object")
            fields["state_canonical"] = canonical_json(state)
    except (ValueError, TypeError, RecursionError) as exc:
        return broken(f"value or state is not usable JSON ({type(exc).__name__})")
    if fields["ok"] and (fields["value_json"] is None or fields["state_json"] is None):
        return broken("ok without a value or state")
    if not fields["ok"] and fields["error_type"] is None:
        return broken("failure without an error type")
    return fields
