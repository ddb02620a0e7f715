"""The outcome of one sandboxed call, and the digest that makes it reproducible.

>>> r = ExecutionResult.rejected("InvalidCall", "bad", runtime_digest="sha256:00")
>>> r.ok, r.error_type, r.fuel_used
(False, 'InvalidCall', 0)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

#: Bumped when the digest recipe changes, so old and new digests never collide.
DIGEST_VERSION = 1


def canonical_json(value: Any) -> str:
    """Compact, ASCII JSON with sorted keys: the form every digest is computed over.

    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"\\\\u00e9"],"b":1}'
    """
    return json.dumps(
        value, ensure_ascii=True, allow_nan=False, sort_keys=True, separators=(",", ":")
    )


def sha256_text(text: str) -> str:
    """``sha256:<hex>`` of the UTF-8 bytes of ``text``."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ExecutionResult:
    """What a sandboxed call produced.

    ``value`` is the tool's return value as JSON-compatible Python data (``value_json`` is its
    exact JSON text). ``result_digest`` covers the code, the call, the seed, the deterministic
    limits, the runtime digest and every deterministic field below; ``duration_s`` and
    ``timed_out`` are excluded because they depend on the machine.
    """

    ok: bool
    value: Any
    value_json: str | None
    stdout: str
    stderr: str
    error_type: str | None
    error_message: str | None
    timed_out: bool
    fuel_exhausted: bool
    memory_exceeded: bool
    output_truncated: bool
    fuel_used: int
    duration_s: float
    runtime_digest: str
    result_digest: str
    #: Canonical JSON of ``STATE`` after a successful call (None when the call failed).
    state_json: str | None = None

    @property
    def state(self) -> Any:
        """The tool state after the call, parsed from ``state_json`` (None if it failed)."""
        return None if self.state_json is None else json.loads(self.state_json)

    def as_dict(self) -> dict[str, Any]:
        """All fields as a JSON-compatible dict."""
        return asdict(self)

    @classmethod
    def rejected(
        cls, error_type: str, message: str, *, runtime_digest: str, result_digest: str = ""
    ) -> ExecutionResult:
        """A result for input refused on the host before anything ran."""
        return cls(
            ok=False,
            value=None,
            value_json=None,
            stdout="",
            stderr="",
            error_type=error_type,
            error_message=message,
            timed_out=False,
            fuel_exhausted=False,
            memory_exceeded=False,
            output_truncated=False,
            fuel_used=0,
            duration_s=0.0,
            runtime_digest=runtime_digest,
            result_digest=result_digest,
        )


def result_digest(
    *,
    code: str,
    call: str,
    seed: int,
    limits: dict[str, Any],
    state_in: str | None,
    runtime_digest: str,
    outcome: dict[str, Any],
) -> str:
    """Digest of the inputs and the deterministic part of an outcome."""
    return sha256_text(
        canonical_json(
            {
                "version": DIGEST_VERSION,
                "code": sha256_text(code),
                "call": call,
                "seed": seed,
                "limits": limits,
                "state_in": None if state_in is None else sha256_text(state_in),
                "runtime": runtime_digest,
                "outcome": outcome,
            }
        )
    )
