"""A pool of worker processes, each holding one loaded :class:`~sandbox.core.Sandbox`.

Workers are started with the ``spawn`` method (no forked wasmtime state) and each loads the
cached compiled component once (a few ms); the parent builds or compiles the artifact before
starting them, so workers never race to build. Results are plain frozen dataclasses and pickle
across processes; because every call is deterministic, which worker runs a call never
changes its result.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.core import Sandbox
from sandbox.policy import Limits
from sandbox.result import ExecutionResult
from sandbox.session import CallRecord, Environment, run_session


@dataclass(frozen=True)
class RunRequest:
    """One stateless call for the pool: tool code, a call statement, a seed, an optional state."""

    code: str
    call: str
    seed: int = 0
    state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SessionOutcome:
    """What a whole session run in a worker produced."""

    results: tuple[ExecutionResult, ...]
    log: tuple[CallRecord, ...]
    final_state_json: str
    final_state_digest: str
    runtime_digest: str = field(default="")


STARTUP_TIMEOUT_S = 300.0
_WORKER: Sandbox | None = None


def _init_worker(cache_dir: str, limits: Limits, runtime_path: str | None) -> None:
    global _WORKER
    _WORKER = Sandbox(cache_dir, limits, runtime_path=runtime_path).load()


def _worker() -> Sandbox:
    if _WORKER is None:
        raise RuntimeError("sandbox pool worker was not initialised")
    return _WORKER


def _run_one(request: RunRequest) -> ExecutionResult:
    return _worker().run(request.code, request.call, seed=request.seed, state=request.state)


def _run_session(environment: Environment, calls: Sequence[str], seed: int) -> SessionOutcome:
    sandbox = _worker()
    session, results = run_session(sandbox, environment, calls, seed)
    return SessionOutcome(
        results=tuple(results),
        log=session.log,
        final_state_json=session.state_json,
        final_state_digest=session.state_digest,
        runtime_digest=sandbox.runtime_digest,
    )


def _ping(delay_s: float) -> int:
    _worker()
    time.sleep(delay_s)
    return os.getpid()


class SandboxPool:
    """Run sandboxed calls and sessions on ``workers`` processes.

    Use as a context manager (``with SandboxPool(2) as pool: pool.run_many(requests)``) or call
    :meth:`close`. :meth:`start` waits until every worker has loaded its sandbox.
    """

    def __init__(
        self,
        workers: int | None = None,
        cache_dir: Path | str | None = None,
        limits: Limits | None = None,
        *,
        runtime_path: Path | str | None = None,
    ) -> None:
        self.workers = workers if workers is not None else max(1, os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError("SandboxPool needs at least one worker; pass e.g. workers=2")
        self._probe = Sandbox(cache_dir, limits, runtime_path=runtime_path)
        self.limits = self._probe.limits
        self.cache_dir = self._probe.cache_dir
        self._runtime_path = str(runtime_path) if runtime_path is not None else None
        self._executor: ProcessPoolExecutor | None = None

    @property
    def runtime_digest(self) -> str:
        """Digest of the interpreter every worker runs."""
        return self._probe.runtime_digest

    def start(self) -> SandboxPool:
        """Build/compile the artifact once here, then start and warm every worker."""
        if self._executor is not None:
            return self
        self._probe.load()
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(str(self.cache_dir), self.limits, self._runtime_path),
        )
        # Workers start on demand and load at different speeds: wait until each has answered.
        seen: set[int] = set()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(seen) < self.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {self.workers} sandbox workers started")
            pings = [self._executor.submit(_ping, 0.05) for _ in range(self.workers)]
            seen.update(ping.result() for ping in pings)
        return self

    def close(self) -> None:
        """Stop the workers."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._probe.close()

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool(self) -> ProcessPoolExecutor:
        return self.start()._executor  # type: ignore[return-value]

    def submit(
        self, code: str, call: str, seed: int = 0, state: Mapping[str, Any] | None = None
    ) -> Future[ExecutionResult]:
        """Schedule one call; the future resolves to its :class:`ExecutionResult`."""
        request = RunRequest(code, call, seed, dict(state) if state is not None else None)
        return self._pool().submit(_run_one, request)

    def run_many(
        self, requests: Iterable[RunRequest], chunksize: int = 16
    ) -> list[ExecutionResult]:
        """Run many stateless calls across the workers; results keep the input order."""
        return list(self._pool().map(_run_one, requests, chunksize=chunksize))

    def run_sessions(
        self, environment: Environment, call_lists: Sequence[Sequence[str]], seeds: Sequence[int]
    ) -> list[SessionOutcome]:
        """Run one session per call list (with the matching seed), sessions in parallel."""
        if len(call_lists) != len(seeds):
            raise ValueError("run_sessions needs one seed per call list")
        futures = [
            self._pool().submit(_run_session, environment, list(calls), seed)
            for calls, seed in zip(call_lists, seeds, strict=True)
        ]
        return [future.result() for future in futures]
