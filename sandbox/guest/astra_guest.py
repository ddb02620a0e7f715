"""Guest half of the ASTRA sandbox: the app module that componentize-py wraps.

This file runs inside CPython 3.14 compiled to WASI. componentize-py imports it once at
build time and snapshots the initialised interpreter (``--stub-wasi``: every WASI import is
replaced by a trapping stub, so the component imports nothing from the host). Each host call
instantiates that snapshot afresh and calls the exported ``run(request) -> response``.

On the host (for example when pytest collects doctests) this module only defines functions
and classes; the interpreter is patched by ``_install()``, which runs at import time only when
``sys.platform == "wasi"``. The allow-list and the clock constants come from the generated
module ``astra_policy`` that the host writes next to this file when it builds the component.

Request (JSON object): ``code`` (str), ``bytecode`` (base64 marshal of the compiled code, or
null), ``function`` (str), ``args`` (list), ``kwargs`` (object), ``seed`` (int), ``state``
(object), ``max_output_chars``, ``max_value_bytes``, ``max_state_bytes``, ``max_error_chars``
(ints). A request ``{"compile_only": true, "code": ...}`` answers ``{"ok", "bytecode"}``.

Response (ASCII JSON object): ``ok``, ``value_json`` (canonical JSON text or null), ``stdout``,
``stderr``, ``error_type``, ``error_message``, ``output_truncated``, ``state_json``.

>>> w = _CappedWriter(5)
>>> w.write("abc"), w.write("defg"), w.getvalue(), w.truncated
(3, 4, 'abcde', True)
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

TOOL_FILENAME = "<tool>"
TOOL_MODULE = "__tool__"
#: Audit events (PEP 578) refused while tool code runs: files, processes, sockets, native code.
_BLOCKED_EVENTS = frozenset({"open", "os.system", "subprocess.Popen", "webbrowser.open"})
_BLOCKED_PREFIXES = (
    "os.",
    "socket.",
    "ctypes.",
    "shutil.",
    "tempfile.",
    "glob.",
    "sqlite3.",
    "urllib.Request",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "pty.",
    "_thread.",
    "threading.",
    "fcntl.",
    "mmap.",
    "signal.",
    "resource.",
    "syslog.",
    "cpython.run_",
)
_INTERNAL_ERROR = "SandboxInternalError"


class _CappedWriter:
    """A text stream that keeps at most ``cap`` characters and records that it dropped some."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, cap: int) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._cap = cap
        self.truncated = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self._cap - self._size
        kept = text if len(text) <= room else text[: max(room, 0)]
        if len(kept) < len(text):
            self.truncated = True
        if kept:
            self._parts.append(kept)
            self._size += len(kept)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self._parts)


def _clean_text(text: str) -> str:
    """Replace lone surrogates so that the text is valid UTF-8 on the host side."""
    return text.encode("utf-8", "replace").decode("utf-8")


class _Runtime:
    """Everything the runner needs, captured before the interpreter is locked down."""

    def __init__(self) -> None:
        import base64
        import builtins
        import io
        import json
        import linecache
        import marshal
        import os
        import random
        import time
        import traceback
        import types
        import uuid

        import astra_policy

        self.policy = astra_policy
        self.builtins = builtins
        self.base64 = base64
        self.marshal = marshal
        self.json = json
        self.linecache = linecache
        self.traceback = traceback
        self.random = random
        self.module_type = types.ModuleType
        self.restricted = False
        self.seed = 0
        self.clock_ns = 0
        self.auto_seeds = 0
        self.urandom_rng = random.Random(0)
        self.real_import = builtins.__import__
        self.allowed = frozenset(astra_policy.ALLOWED_MODULES)
        self.allowed_parents = frozenset(
            name.rsplit(".", 1)[0] for name in astra_policy.ALLOWED_MODULES if "." in name
        )
        self._patch_environment(os)
        self._patch_clock(time)
        self._patch_randomness(os, random, uuid)
        self._patch_files(builtins, io)
        sys.addaudithook(self._audit)

    # -- lockdown ----------------------------------------------------------------------------
    def _patch_environment(self, os: Any) -> None:
        os.environ.clear()
        sys.argv[:] = []

    def _patch_clock(self, time: Any) -> None:
        base_ns: int = int(self.policy.CLOCK_EPOCH_S) * 1_000_000_000
        tick_ns: int = int(self.policy.CLOCK_TICK_NS)
        orig_localtime: Callable[..., Any] = time.localtime
        orig_gmtime: Callable[..., Any] = time.gmtime
        orig_strftime: Callable[..., str] = time.strftime
        orig_asctime: Callable[..., str] = time.asctime

        def read_ns() -> int:
            self.clock_ns += tick_ns
            return self.clock_ns

        def time_ns() -> int:
            return base_ns + read_ns()

        def time_s() -> float:
            return time_ns() / 1e9

        def monotonic_ns(*_clock: Any) -> int:
            return read_ns()

        def monotonic(*_clock: Any) -> float:
            return read_ns() / 1e9

        def sleep(secs: float) -> None:
            if secs < 0:
                raise ValueError("sleep length must be non-negative")
            self.clock_ns += int(secs * 1e9)

        def localtime(secs: float | None = None) -> Any:
            return orig_localtime(time_s() if secs is None else secs)

        def gmtime(secs: float | None = None) -> Any:
            return orig_gmtime(time_s() if secs is None else secs)

        def ctime(secs: float | None = None) -> str:
            return orig_asctime(localtime(secs))

        def asctime(t: Any = None) -> str:
            return orig_asctime(localtime() if t is None else t)

        def strftime(fmt: str, t: Any = None) -> str:
            return orig_strftime(fmt, localtime() if t is None else t)

        time.time, time.time_ns = time_s, time_ns
        for name in ("monotonic", "perf_counter", "process_time", "thread_time"):
            setattr(time, name, monotonic)
            setattr(time, name + "_ns", monotonic_ns)
        time.clock_gettime, time.clock_gettime_ns = monotonic, monotonic_ns
        time.sleep, time.localtime, time.gmtime = sleep, localtime, gmtime
        time.ctime, time.asctime, time.strftime = ctime, asctime, strftime

    def _patch_randomness(self, os: Any, random: Any, uuid: Any) -> None:
        def urandom(size: int) -> bytes:
            return self.urandom_rng.randbytes(size)

        orig_seed = random.Random.seed

        def seed(rng: Any, a: Any = None, version: int = 2) -> None:
            if a is None:
                self.auto_seeds += 1
                a = f"astra-auto:{self.seed}:{self.auto_seeds}"
            orig_seed(rng, a, version)

        def getnode() -> int:
            return self.urandom_rng.getrandbits(48) | (1 << 40)

        os.urandom = urandom
        random._urandom = urandom
        random.Random.seed = seed
        random.seed = random._inst.seed  # the module-level alias was bound before the patch
        uuid.getnode = getnode

    def _patch_files(self, builtins: Any, io: Any) -> None:
        def no_files(*_args: Any, **_kwargs: Any) -> Any:
            raise PermissionError("the sandbox has no filesystem")

        def no_console(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("the sandbox has no console input or debugger")

        builtins.open = no_files
        io.open = no_files
        builtins.input = no_console
        builtins.breakpoint = no_console
        for name in ("exit", "quit", "help", "copyright", "credits", "license"):
            builtins.__dict__.pop(name, None)
        builtins.__import__ = self._import

    def _audit(self, event: str, _args: tuple[Any, ...]) -> None:
        # CPython also opens a file to quote the offending line of a SyntaxError; refusing the
        # "open" event makes it fall back to the source string instead of calling into WASI.
        if self.restricted and (event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES)):
            if event == "open":
                raise PermissionError("the sandbox has no filesystem")
            raise PermissionError(f"{event} is not available in the sandbox")

    def _import(
        self,
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if self.restricted:
            if level != 0:
                raise ImportError("relative imports are not available in the sandbox")
            if name not in self.allowed and name not in self.allowed_parents:
                raise ImportError(
                    f"module {name!r} is not available in the sandbox; "
                    f"allowed modules: {', '.join(sorted(self.allowed))}",
                    name=name,
                )
            if fromlist:
                # ``from pkg import sub`` would make importlib search the (absent) filesystem
                # for a submodule that is not in the snapshot: refuse it here instead.
                self.real_import(name, globals, locals, (), 0)
                module = sys.modules[name]
                for item in fromlist:
                    full = f"{name}.{item}"
                    if item != "*" and not hasattr(module, item) and full not in self.allowed:
                        raise ImportError(
                            f"cannot import name {item!r} from {name!r}: module {full!r} is "
                            "not available in the sandbox",
                            name=full,
                        )
        return self.real_import(name, globals, locals, fromlist, level)

    # -- one call ----------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.seed = seed
        self.clock_ns = 0
        self.auto_seeds = 0
        self.random.seed(seed)
        self.urandom_rng.seed(f"astra-urandom:{seed}")

    def handle(self, request_text: str) -> str:
        try:
            request = self.json.loads(request_text)
            if request.get("compile_only"):
                return self.json.dumps(self._compile_only(request["code"]), ensure_ascii=True)
            return self.json.dumps(self._execute(request), ensure_ascii=True)
        except BaseException as exc:  # the runner itself must never trap
            self.restricted = False
            return self.json.dumps(
                {
                    "ok": False,
                    "value_json": None,
                    "stdout": "",
                    "stderr": "",
                    "error_type": _INTERNAL_ERROR,
                    "error_message": _clean_text(f"{type(exc).__name__}: {exc}")[:2000],
                    "output_truncated": False,
                    "state_json": None,
                },
                ensure_ascii=True,
            )

    def _compile_only(self, code: str) -> dict[str, Any]:
        """Compile without running anything; the host caches the marshalled code object.

        Compiling is most of the cost of a small call, and it is a pure function of the source,
        so the host asks for it once per distinct source and sends the bytecode back with
        every later call. No tool code runs here, so the bytecode cannot be tampered with.
        """
        self.restricted = True
        try:
            compiled = compile(code, TOOL_FILENAME, "exec", dont_inherit=True)
        except BaseException as exc:
            return _failure(type(exc).__name__, _clean_text(str(exc))[:2000])
        finally:
            self.restricted = False
        encoded = self.base64.b64encode(self.marshal.dumps(compiled)).decode("ascii")
        return {"ok": True, "bytecode": encoded}

    def _execute(self, request: dict[str, Any]) -> dict[str, Any]:
        code: str = request["code"]
        self.reset(int(request["seed"]))
        stdout = _CappedWriter(int(request["max_output_chars"]))
        stderr = _CappedWriter(int(request["max_output_chars"]))
        max_error = int(request["max_error_chars"])
        module = self.module_type(TOOL_MODULE)
        namespace: dict[str, Any] = module.__dict__
        # A private copy: tool code that rebinds builtins only changes its own view of them.
        namespace["__builtins__"] = dict(self.builtins.__dict__)
        namespace["STATE"] = request["state"] if request["state"] is not None else {}
        sys.modules[TOOL_MODULE] = module
        self.linecache.cache[TOOL_FILENAME] = (
            len(code),
            None,
            code.splitlines(keepends=True),
            TOOL_FILENAME,
        )
        response: dict[str, Any] = {
            "ok": False,
            "value_json": None,
            "error_type": None,
            "error_message": None,
            "state_json": None,
        }
        saved_streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        self.restricted = True
        try:
            response.update(self._call(code, namespace, request, stderr, max_error))
        finally:
            self.restricted = False
            sys.stdout, sys.stderr = saved_streams
            sys.modules.pop(TOOL_MODULE, None)
            namespace.clear()
        response["stdout"] = _clean_text(stdout.getvalue())
        response["stderr"] = _clean_text(stderr.getvalue())
        response["output_truncated"] = stdout.truncated or stderr.truncated
        return response

    def _call(
        self,
        code: str,
        namespace: dict[str, Any],
        request: dict[str, Any],
        stderr: _CappedWriter,
        max_error: int,
    ) -> dict[str, Any]:
        try:
            bytecode = request.get("bytecode")
            if bytecode is None:
                compiled = compile(code, TOOL_FILENAME, "exec", dont_inherit=True)
            else:
                compiled = self.marshal.loads(self.base64.b64decode(bytecode))
            exec(compiled, namespace)
            if request["state"] is not None:
                # The session's state wins over a default STATE the code assigns at import.
                namespace["STATE"] = request["state"]
            function = namespace.get(request["function"])
            if not callable(function):
                return _failure(
                    "ToolNotFound",
                    f"the tool code defines no callable named {request['function']!r}",
                )
            value = function(*request["args"], **request["kwargs"])
        except BaseException as exc:
            return self._exception(exc, stderr, max_error)
        value_json = self._encode(value, "return value", int(request["max_value_bytes"]))
        if isinstance(value_json, dict):
            return value_json
        state = namespace.get("STATE")
        if not isinstance(state, dict):
            return _failure("InvalidState", f"STATE must stay a dict, not {type(state).__name__}")
        state_json = self._encode(state, "STATE", int(request["max_state_bytes"]))
        if isinstance(state_json, dict):
            return state_json
        return {"ok": True, "value_json": value_json, "state_json": state_json}

    def _encode(self, value: Any, what: str, limit: int) -> str | dict[str, Any]:
        try:
            text = self.json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        except BaseException as exc:
            return _failure(
                "ValueNotSerializable",
                _clean_text(f"the {what} is not JSON-serializable: {exc}")[:2000],
            )
        if len(text) > limit:
            kind = "StateTooLarge" if what == "STATE" else "ValueTooLarge"
            return _failure(kind, f"the {what} is {len(text)} bytes of JSON; the cap is {limit}")
        return text

    def _exception(
        self, exc: BaseException, stderr: _CappedWriter, max_error: int
    ) -> dict[str, Any]:
        message = _clean_text(str(exc))[:max_error]
        try:
            frames = [
                frame
                for frame in self.traceback.extract_tb(exc.__traceback__)
                if frame.filename == TOOL_FILENAME
            ]
            lines = ["Traceback (most recent call last):\n"]
            lines += self.traceback.format_list(frames)
            lines += self.traceback.format_exception_only(type(exc), exc)
            stderr.write("".join(lines)[: max_error * 4])
        except BaseException:
            stderr.write(f"{type(exc).__name__}: {message}\n")
        finally:
            exc.__traceback__ = None
        return _failure(type(exc).__name__, message)


def _failure(error_type: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error_type": error_type, "error_message": message}


_RUNTIME: _Runtime | None = None


def _install() -> None:
    """Import the allow-listed modules into the snapshot and lock the interpreter down."""
    global _RUNTIME
    # The pure-Python datetime reads time.time() at call time, so it sees the virtual clock.
    sys.modules["_datetime"] = None  # type: ignore[assignment]
    import astra_policy

    for name in astra_policy.ALLOWED_MODULES:
        __import__(name)
    _RUNTIME = _Runtime()
    import gc

    # Move every object of the snapshot to the permanent generation: the collector then never
    # walks (and so never copy-on-write faults) the snapshot's heap pages during a call.
    gc.collect()
    gc.freeze()


class WitWorld:
    """The export of the ``tool-runner`` world: one JSON request in, one JSON response out."""

    def run(self, request: str) -> str:
        if _RUNTIME is None:
            return (
                '{"ok":false,"error_type":"SandboxInternalError","error_message":"not installed"}'
            )
        return _RUNTIME.handle(request)


if sys.platform == "wasi":
    _install()
