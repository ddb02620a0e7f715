"""Build, store and load the sandbox interpreter artifact (a componentize-py component).

Layout of the cache directory (default ``~/.cache/astra/sandbox``)::

    components/<sha256>.wasm        the built component, named by the sha256 of its bytes
    builds/<inputs-key>.digest      which component a given set of build inputs produced
    compiled/<sha256>-<engine>.cwasm  the component compiled for this wasmtime/CPU/config
    build.lock                      serialises builds across processes

The build inputs key is a sha256 over the guest source, the WIT world, the generated policy
module and the componentize-py version. Builds are not bit-reproducible (each build bakes in a
fresh string-hash secret), which is why results record the digest of the component, not of
its inputs. Every file is written to a temporary name in its final directory and moved into
place with an atomic rename, and builds hold an exclusive ``flock``, so two processes that
start at once build once and never see a half-written file.

Trust: a compiled ``.cwasm`` is native code that wasmtime maps and runs; the cache directory
must be writable only by its owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

from sandbox.policy import guest_policy_source

GUEST_DIR = Path(__file__).resolve().parent / "guest"
GUEST_APP = "astra_guest"
GUEST_WORLD = "tool-runner"
BUILD_TIMEOUT_S = 600

_BUILD_SCRIPT = (
    "import sys, componentize_py\n"
    "sys.argv = ['componentize-py'] + sys.argv[1:]\n"
    "sys.exit(componentize_py.script())\n"
)


class RuntimeBuildError(RuntimeError):
    """componentize-py failed to build the interpreter component."""


def default_cache_dir() -> Path:
    """``~/.cache/astra/sandbox``: where artifacts live unless a caller passes another path."""
    return Path.home() / ".cache" / "astra" / "sandbox"


@dataclass(frozen=True)
class RuntimeArtifact:
    """A built interpreter component on disk and the sha256 digest of its bytes."""

    digest: str
    path: Path

    @property
    def hex(self) -> str:
        """The bare hex digest (``digest`` without the ``sha256:`` prefix)."""
        return self.digest.removeprefix("sha256:")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _guest_sources() -> dict[str, bytes]:
    return {
        "astra_guest.py": (GUEST_DIR / "astra_guest.py").read_bytes(),
        "astra_policy.py": guest_policy_source().encode(),
        "wit/world.wit": (GUEST_DIR / "wit" / "world.wit").read_bytes(),
    }


def build_inputs_key() -> str:
    """sha256 over everything that goes into a build (sources, policy, tool version)."""
    digest = hashlib.sha256()
    digest.update(f"componentize-py=={importlib.metadata.version('componentize-py')}\n".encode())
    for name, data in sorted(_guest_sources().items()):
        digest.update(f"{name}:{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _cached_artifact(cache_dir: Path, key: str) -> RuntimeArtifact | None:
    index = cache_dir / "builds" / f"{key}.digest"
    if not index.is_file():
        return None
    hex_digest = index.read_text().strip()
    path = cache_dir / "components" / f"{hex_digest}.wasm"
    if not path.is_file():
        return None
    return RuntimeArtifact(digest=f"sha256:{hex_digest}", path=path)


def _build_component(output: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="astra-sandbox-build-") as tmp:
        app_dir = Path(tmp) / "app"
        for name, data in _guest_sources().items():
            target = app_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        command = [
            sys.executable,
            "-c",
            _BUILD_SCRIPT,
            "-q",
            "-d",
            str(app_dir / "wit"),
            "-w",
            GUEST_WORLD,
            "componentize",
            "--stub-wasi",
            "-p",
            str(app_dir),
            "-o",
            str(output),
            GUEST_APP,
        ]
        # A minimal environment: nothing of the builder's environment reaches the snapshot.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0 or not output.is_file():
            detail = (proc.stderr or proc.stdout).strip()[-4000:]
            raise RuntimeBuildError(f"componentize-py failed (exit {proc.returncode}): {detail}")


def ensure_runtime(cache_dir: Path) -> RuntimeArtifact:
    """Return the interpreter component for the current guest sources, building it if needed."""
    key = build_inputs_key()
    found = _cached_artifact(cache_dir, key)
    if found is not None:
        return found
    with _exclusive_lock(cache_dir / "build.lock"):
        found = _cached_artifact(cache_dir, key)
        if found is not None:
            return found
        components = cache_dir / "components"
        components.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=components, prefix=".build-", suffix=".wasm")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _build_component(tmp)
            hex_digest = _sha256_file(tmp)
            final = components / f"{hex_digest}.wasm"
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _atomic_write(cache_dir / "builds" / f"{key}.digest", f"{hex_digest}\n".encode())
        return RuntimeArtifact(digest=f"sha256:{hex_digest}", path=final)


def artifact_from_file(path: Path, expected_digest: str | None = None) -> RuntimeArtifact:
    """Use an existing component file (e.g. one fetched from an archive), checking its digest."""
    if not path.is_file():
        raise FileNotFoundError(f"no sandbox runtime component at {path}")
    digest = f"sha256:{_sha256_file(path)}"
    if expected_digest is not None and digest != expected_digest:
        raise ValueError(f"runtime {path} has digest {digest}, expected {expected_digest}")
    return RuntimeArtifact(digest=digest, path=path)


def engine_fingerprint(settings: str) -> str:
    """Short key for compiled code: wasmtime version, CPU architecture and engine settings."""
    text = "|".join(
        [importlib.metadata.version("wasmtime"), platform.machine(), sys.platform, settings]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_compiled(
    engine: Engine, artifact: RuntimeArtifact, cache_dir: Path, fingerprint: str
) -> Component:
    """Load the compiled component from the cache, compiling (~5-8 s) and caching on a miss."""
    compiled = cache_dir / "compiled" / f"{artifact.hex}-{fingerprint}.cwasm"
    if compiled.is_file():
        try:
            return Component.deserialize_file(engine, str(compiled))
        except WasmtimeError:
            compiled.unlink(missing_ok=True)
    if _sha256_file(artifact.path) != artifact.hex:
        raise ValueError(f"runtime component {artifact.path} does not match {artifact.digest}")
    component = Component.from_file(engine, artifact.path)
    _atomic_write(compiled, bytes(component.serialize()))
    return component
