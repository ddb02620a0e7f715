"""Stateful sessions: tool functions plus a JSON state that calls read and change.

State model (event sourcing). An :class:`Environment` is tool code plus an initial state. Tool
code reads and mutates the module-level dict ``STATE``. Every call runs in a fresh interpreter
instance: the host sends the current state in, the guest runs the call, and on success sends
the new ``STATE`` back as canonical JSON, which becomes the session state. A failed call
(exception, trap, fuel, memory, invalid call) leaves the state unchanged, like a rolled-back
transaction. Each call is appended to the log as a :class:`CallRecord` (the call text, its
seed, the result digest, the state digest after it), and the session state is a pure function
of (environment, session seed, call texts), so :meth:`Session.replay` rebuilds identical
outputs and the identical final state digest.

Cost of this choice (fresh instance + state carried by the host, rather than a live instance
per session): ~0.5 ms to instantiate per call, the same as a stateless call, plus encoding and
decoding the state as JSON on both sides, which is linear in its size (about 1 ms per 100 KB of
state); in exchange a trap or a hostile call can never corrupt later calls, sessions hold no
wasm memory between calls, and any call can run on any worker process.

>>> env = Environment(code="def f():\\n    return 1", initial_state={"n": 0})
>>> env.initial_state_json
'{"n":0}'
>>> derive_call_seed(7, 0) != derive_call_seed(7, 1)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.calls import ToolCall
from sandbox.core import MAX_SEED, Sandbox
from sandbox.result import ExecutionResult, canonical_json, sha256_text


class ReplayMismatchError(RuntimeError):
    """A replayed call produced a different result digest than the one in the log."""

    def __init__(self, index: int, call: str, expected: str, actual: str) -> None:
        super().__init__(
            f"replay diverged at call {index} ({call}): logged result {expected}, got {actual}"
        )
        self.index = index
        self.expected = expected
        self.actual = actual


def derive_call_seed(session_seed: int, index: int) -> int:
    """The seed of call ``index`` in a session: a hash of (session seed, index)."""
    digest = hashlib.sha256(f"astra-session:{session_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


@dataclass(frozen=True)
class Environment:
    """Tool code (functions reading and mutating ``STATE``) and the initial ``STATE``."""

    code: str
    initial_state: Mapping[str, Any] = field(default_factory=dict)
    name: str = "environment"

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise TypeError("Environment.code must be the tool source as a str")
        if not isinstance(self.initial_state, Mapping):
            raise TypeError("Environment.initial_state must be a dict of JSON values")
        try:
            canonical_json(dict(self.initial_state))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Environment.initial_state is not JSON: {exc}") from None

    @property
    def initial_state_json(self) -> str:
        """Canonical JSON of the initial state."""
        return canonical_json(dict(self.initial_state))

    @property
    def digest(self) -> str:
        """Digest of the code and the initial state."""
        return sha256_text(canonical_json({"code": self.code, "state": self.initial_state_json}))


@dataclass(frozen=True)
class CallRecord:
    """One event of a session log: a call was applied (or refused) with this outcome."""

    index: int
    call: str
    seed: int
    ok: bool
    result_digest: str
    state_digest: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form of the record."""
        return {
            "index": self.index,
            "call": self.call,
            "seed": self.seed,
            "ok": self.ok,
            "result_digest": self.result_digest,
            "state_digest": self.state_digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """Inverse of :meth:`as_dict`."""
        return cls(
            index=int(data["index"]),
            call=str(data["call"]),
            seed=int(data["seed"]),
            ok=bool(data["ok"]),
            result_digest=str(data["result_digest"]),
            state_digest=str(data["state_digest"]),
        )


class Session:
    """A sequence of calls against one environment whose effects on ``STATE`` persist."""

    def __init__(self, sandbox: Sandbox, environment: Environment, seed: int = 0) -> None:
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED}")
        self.sandbox = sandbox
        self.environment = environment
        self.seed = seed
        self._state_json = environment.initial_state_json
        self._log: list[CallRecord] = []

    @property
    def state(self) -> dict[str, Any]:
        """A copy of the current state."""
        state: dict[str, Any] = json.loads(self._state_json)
        return state

    @property
    def state_json(self) -> str:
        """Canonical JSON of the current state."""
        return self._state_json

    @property
    def state_digest(self) -> str:
        """``sha256:`` digest of the canonical JSON of the current state."""
        return sha256_text(self._state_json)

    @property
    def log(self) -> tuple[CallRecord, ...]:
        """The calls applied so far, in order."""
        return tuple(self._log)

    def call(self, call: str | ToolCall) -> ExecutionResult:
        """Apply one call statement (``"book(flight='AF1')"``) and persist its effect."""
        text = call.canonical() if isinstance(call, ToolCall) else call
        index = len(self._log)
        seed = derive_call_seed(self.seed, index)
        result = self.sandbox.run(self.environment.code, call, seed=seed, state=self.state)
        if result.ok and result.state_json is not None:
            self._state_json = result.state_json
        self._log.append(
            CallRecord(
                index=index,
                call=text,
                seed=seed,
                ok=result.ok,
                result_digest=result.result_digest,
                state_digest=self.state_digest,
            )
        )
        return result

    def call_function(self, name: str, args: Mapping[str, Any] | None = None) -> ExecutionResult:
        """Apply ``name(**args)`` with JSON keyword arguments."""
        return self.call(ToolCall(name=name, kwargs=dict(args or {})))

    def transcript(self) -> dict[str, Any]:
        """A JSON document that is enough to replay and audit this session."""
        return {
            "environment": self.environment.digest,
            "seed": self.seed,
            "runtime": self.sandbox.runtime_digest,
            "calls": [record.as_dict() for record in self._log],
            "final_state_digest": self.state_digest,
        }

    @classmethod
    def replay(
        cls,
        sandbox: Sandbox,
        environment: Environment,
        log: Sequence[CallRecord | str],
        seed: int = 0,
        *,
        verify: bool = True,
    ) -> tuple[Session, list[ExecutionResult]]:
        """Re-apply a call log from the initial state.

        With ``verify`` (and :class:`CallRecord` entries) every result digest must match the
        logged one, else :class:`ReplayMismatchError`.
        """
        session = cls(sandbox, environment, seed)
        results: list[ExecutionResult] = []
        for entry in log:
            text = entry.call if isinstance(entry, CallRecord) else entry
            result = session.call(text)
            results.append(result)
            if (
                verify
                and isinstance(entry, CallRecord)
                and result.result_digest != entry.result_digest
            ):
                raise ReplayMismatchError(
                    entry.index, text, entry.result_digest, result.result_digest
                )
        return session, results


def run_session(
    sandbox: Sandbox, environment: Environment, calls: Sequence[str | ToolCall], seed: int = 0
) -> tuple[Session, list[ExecutionResult]]:
    """Apply ``calls`` in order in a new session; return the session and every result."""
    session = Session(sandbox, environment, seed)
    results = [session.call(call) for call in calls]
    return session, results
