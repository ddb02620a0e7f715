"""The sandbox against real tool code: one attack per hostile test, plus the API contract.

The interpreter artifact is built once per pytest session into a temporary cache, by two
processes at once (the build must be safe under concurrency); every other test loads the
cached compiled component.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sandbox
from sandbox import (
    CallRecord,
    Environment,
    Limits,
    ReplayMismatchError,
    RunRequest,
    Sandbox,
    SandboxPool,
    Session,
    run_session,
)
from sandbox.bench import BOOKING_STATE, BOOKING_TOOL, SMALL_CALL, SMALL_TOOL, booking_calls
from sandbox.cli import app

PROJECT_ROOT = Path(sandbox.__file__).resolve().parent.parent


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + extra if extra else "")
    return env


def _spawn(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )


def _last_json_line(proc: subprocess.Popen[str]) -> dict[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    data: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return data


@pytest.fixture(scope="session")
def concurrent_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """Build the runtime into a fresh cache from two processes started together."""
    cache = tmp_path_factory.mktemp("astra-sandbox-cache")
    script = (
        "import json\n"
        "from pathlib import Path\n"
        "from sandbox.runtime import ensure_runtime\n"
        f"artifact = ensure_runtime(Path({str(cache)!r}))\n"
        "print(json.dumps({'digest': artifact.digest, 'path': str(artifact.path)}))\n"
    )
    procs = [_spawn(script) for _ in range(2)]
    return cache, [_last_json_line(proc) for proc in procs]


@pytest.fixture(scope="session")
def cache_dir(concurrent_build: tuple[Path, list[dict[str, str]]]) -> Path:
    return concurrent_build[0]


@pytest.fixture(scope="session")
def sb(cache_dir: Path) -> Iterator[Sandbox]:
    sandbox_ = Sandbox(cache_dir).load()
    yield sandbox_
    sandbox_.close()


# -- artifact and cache -----------------------------------------------------------------------


def test_concurrent_builds_agree_on_one_content_addressed_artifact(
    concurrent_build: tuple[Path, list[dict[str, str]]], sb: Sandbox
) -> None:
    cache, outputs = concurrent_build
    assert outputs[0] == outputs[1]
    components = sorted((cache / "components").glob("*.wasm"))
    assert [path.name for path in components] == [outputs[0]["digest"][7:] + ".wasm"]
    assert not list((cache / "components").glob(".*"))  # no temporary leftovers
    assert sb.runtime_digest == outputs[0]["digest"]
    assert len(list((cache / "compiled").glob("*.cwasm"))) == 1


def test_every_result_records_the_runtime_digest(sb: Sandbox) -> None:
    result = sb.run(SMALL_TOOL, SMALL_CALL)
    assert result.ok, result
    assert result.value == {"city": "Paris", "temp": 65.3, "unit": "f", "sky": "cloudy"}
    assert result.runtime_digest == sb.runtime_digest
    assert result.result_digest.startswith("sha256:")


def test_expected_runtime_digest_is_enforced(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="expected sha256:0000"):
        Sandbox(cache_dir, expected_runtime_digest="sha256:" + "0" * 64).load()


# -- hostile tool code: one attack per test ---------------------------------------------------


def test_infinite_loop_exhausts_fuel(cache_dir: Path) -> None:
    small = Sandbox(cache_dir, Limits(fuel=50_000_000))
    result = small.run("def spin():\n    while True:\n        pass", "spin()")
    assert not result.ok
    assert result.fuel_exhausted and result.error_type == "FuelExhausted"
    assert result.fuel_used == 50_000_000
    assert not result.timed_out


def test_infinite_loop_hits_the_wall_clock_deadline(cache_dir: Path) -> None:
    slow = Sandbox(cache_dir, Limits(fuel=10**15, deadline_s=0.2))
    result = slow.run("def spin():\n    while True:\n        pass", "spin()")
    assert not result.ok
    assert result.timed_out and result.error_type == "Timeout"
    assert not result.fuel_exhausted


def test_deep_recursion_is_a_recursion_error(sb: Sandbox) -> None:
    result = sb.run("def down(n):\n    return down(n + 1)", "down(n=0)")
    assert not result.ok
    assert result.error_type == "RecursionError"
    assert "maximum recursion depth" in (result.error_message or "")


def test_memory_bomb_is_stopped_by_the_memory_cap(cache_dir: Path) -> None:
    capped = Sandbox(cache_dir, Limits(memory_bytes=64 * 1024 * 1024))
    code = "def bomb():\n    blocks = []\n    while True:\n        blocks.append('x' * 2**20)"
    result = capped.run(code, "bomb()")
    assert not result.ok
    assert result.memory_exceeded and result.error_type == "MemoryError"


def test_gigantic_stdout_is_truncated(sb: Sandbox) -> None:
    code = "def shout():\n    for _ in range(300):\n        print('y' * 1000)\n    return 'done'"
    result = sb.run(code, "shout()")
    assert result.ok and result.value == "done"
    assert result.output_truncated
    assert len(result.stdout) == sb.limits.max_output_chars


def test_gigantic_return_value_is_refused(sb: Sandbox) -> None:
    result = sb.run("def big():\n    return 'z' * (4 * 2**20)", "big()")
    assert not result.ok
    assert result.error_type == "ValueTooLarge"
    assert result.value is None


def test_non_json_return_value_is_a_clear_error(sb: Sandbox) -> None:
    result = sb.run("def odd():\n    return {1, 2, 3}", "odd()")
    assert not result.ok
    assert result.error_type == "ValueNotSerializable"
    assert "set" in (result.error_message or "")


def test_reading_a_host_file_is_refused(sb: Sandbox) -> None:
    result = sb.run("def peek():\n    return open('/etc/passwd').read()", "peek()")
    assert not result.ok
    assert result.error_type == "PermissionError"


def test_writing_a_host_file_is_refused(sb: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "planted.txt"
    code = f"def plant():\n    with open({str(target)!r}, 'w') as f:\n        f.write('x')"
    result = sb.run(code, "plant()")
    assert result.error_type == "PermissionError"
    assert not target.exists()


def test_io_fileio_cannot_open_files_either(sb: Sandbox) -> None:
    code = "import io\ndef peek():\n    return io.FileIO('/etc/hostname').read().decode()"
    result = sb.run(code, "peek()")
    assert result.error_type == "PermissionError"


def test_socket_cannot_be_imported(sb: Sandbox) -> None:
    result = sb.run("import socket\ndef net():\n    return 1", "net()")
    assert result.error_type == "ImportError"
    assert "'socket' is not available" in (result.error_message or "")


def test_urllib_request_cannot_be_imported(sb: Sandbox) -> None:
    code = "def fetch():\n    import urllib.request\n    return urllib.request.urlopen('http://x')"
    result = sb.run(code, "fetch()")
    assert result.error_type == "ImportError"


def test_from_import_of_a_missing_submodule_is_an_import_error(sb: Sandbox) -> None:
    code = "def fetch():\n    from urllib import request\n    return request.urlopen('http://x')"
    result = sb.run(code, "fetch()")
    assert result.error_type == "ImportError"
    assert "urllib.request" in (result.error_message or "")


def test_subprocess_cannot_be_imported(sb: Sandbox) -> None:
    result = sb.run("import subprocess\ndef sh():\n    return 1", "sh()")
    assert result.error_type == "ImportError"


def test_os_system_is_unreachable(sb: Sandbox) -> None:
    result = sb.run("def sh():\n    import os\n    return os.system('touch /tmp/pwned')", "sh()")
    assert result.error_type == "ImportError"
    assert "'os' is not available" in (result.error_message or "")


def test_escaping_the_import_guard_through_object_graph_still_has_no_os(sb: Sandbox) -> None:
    code = (
        "def escape():\n"
        "    for cls in object.__subclasses__():\n"
        "        g = getattr(getattr(cls, '__init__', None), '__globals__', None)\n"
        "        if g and 'sys' in g:\n"
        "            return g['sys'].modules['os'].listdir('/')\n"
    )
    result = sb.run(code, "escape()")
    assert not result.ok
    assert result.error_type == "PermissionError"
    assert "os.listdir" in (result.error_message or "")


def test_ctypes_cannot_be_imported(sb: Sandbox) -> None:
    result = sb.run("import ctypes\ndef native():\n    return 1", "native()")
    assert result.error_type == "ImportError"


def test_threads_cannot_be_started(sb: Sandbox) -> None:
    code = "def spawn():\n    import threading\n    threading.Thread(target=print).start()"
    result = sb.run(code, "spawn()")
    assert result.error_type == "ImportError"
    assert "'threading' is not available" in (result.error_message or "")


def test_host_environment_variables_are_invisible(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTRA_SECRET_TOKEN", "hunter2")
    code = (
        "def leak():\n"
        "    for cls in object.__subclasses__():\n"
        "        g = getattr(getattr(cls, '__init__', None), '__globals__', None)\n"
        "        if g and 'sys' in g and 'os' in g['sys'].modules:\n"
        "            return dict(g['sys'].modules['os'].environ)\n"
    )
    result = sb.run(code, "leak()")
    assert result.ok, result
    assert result.value == {}
    assert "hunter2" not in json.dumps(result.as_dict())


def test_reading_the_clock_twice_is_deterministic(sb: Sandbox) -> None:
    code = (
        "import time, datetime\n"
        "def clock():\n"
        "    a = time.time()\n"
        "    time.sleep(2)\n"
        "    b = time.time()\n"
        "    return [a, b - a > 2, datetime.datetime.now().isoformat()]\n"
    )
    first, second = sb.run(code, "clock()"), sb.run(code, "clock()")
    assert first.ok and first.value_json == second.value_json
    assert first.value[0] == 1_704_067_200.001
    assert first.value[1] is True
    assert first.result_digest == second.result_digest


def test_random_without_a_seed_is_a_function_of_the_call_seed(sb: Sandbox) -> None:
    code = (
        "import random, uuid, secrets\n"
        "def draw():\n"
        "    random.seed()\n"
        "    return [random.random(), random.Random().random(), str(uuid.uuid4()),\n"
        "            secrets.token_hex(8), str(uuid.uuid1())]\n"
    )
    a, b, c = (
        sb.run(code, "draw()", seed=1),
        sb.run(code, "draw()", seed=1),
        sb.run(code, "draw()", seed=2),
    )
    assert a.ok and a.value == b.value and a.result_digest == b.result_digest
    assert a.fuel_used == b.fuel_used
    assert all(x != y for x, y in zip(a.value, c.value, strict=True))


def test_exception_in_the_tool_is_reported_with_a_tool_only_traceback(sb: Sandbox) -> None:
    code = "def lookup(key):\n    table = {'a': 1}\n    return table[key]"
    result = sb.run(code, "lookup(key='zz')")
    assert not result.ok
    assert result.error_type == "KeyError" and result.error_message == "'zz'"
    assert 'File "<tool>", line 3, in lookup' in result.stderr
    assert "astra_guest" not in result.stderr


def test_syntax_error_in_the_code_is_reported(sb: Sandbox) -> None:
    result = sb.run("def broken(:\n    return 1", "broken()")
    assert not result.ok
    assert result.error_type == "SyntaxError"
    assert "<tool>" in (result.error_message or "")


def test_call_statement_that_is_not_a_simple_call_never_runs(sb: Sandbox) -> None:
    result = sb.run("def f():\n    return 1", "__import__('os').system('touch /tmp/pwned')")
    assert not result.ok
    assert result.error_type == "InvalidCall"
    assert result.fuel_used == 0


def test_tool_that_redefines_builtins_only_changes_its_own_call(sb: Sandbox) -> None:
    hostile = "__builtins__['len'] = lambda x: 42\nprint = None\ndef f():\n    return len([1])"
    assert sb.run(hostile, "f()").value == 42
    clean = sb.run("def f():\n    print('still here')\n    return len([1])", "f()")
    assert clean.ok and clean.value == 1 and clean.stdout == "still here\n"


def test_tool_that_patches_a_module_does_not_leak_into_the_next_call(sb: Sandbox) -> None:
    patched = sb.run("import json\njson.dumps = lambda *a, **k: '7'\ndef f():\n    return 1", "f()")
    assert patched.error_type == "SandboxProtocolError"  # its STATE came back as 7
    result = sb.run("import json\ndef f():\n    return json.dumps([1])", "f()")
    assert result.value == "[1]"


def test_system_exit_in_the_tool_is_just_an_error(sb: Sandbox) -> None:
    result = sb.run("def bye():\n    raise SystemExit(3)", "bye()")
    assert not result.ok and result.error_type == "SystemExit"


def test_huge_code_and_arguments_are_refused_at_the_boundary(cache_dir: Path) -> None:
    small = Sandbox(cache_dir, Limits(max_code_bytes=10_000))
    code = "def f(x):\n    return len(x)\n"
    assert small.run(code + "#" * 20_000, "f(x='a')").error_type == "CodeTooLarge"
    big_arg = small.call_function(code, "f", {"x": "a" * 20_000})
    assert big_arg.error_type == "ArgumentsTooLarge"
    assert big_arg.fuel_used == 0
    assert small.run(code, "f(x='a')", state={"k": "v" * 5_000_000}).error_type == "StateTooLarge"
    assert small.run(code, "f(x='a')", state={"k": {1, 2}}).error_type == "InvalidState"
    assert small.run(code, "f(x='a')", seed=-1).error_type == "InvalidSeed"


def test_invalid_utf8_across_the_interface_is_contained(sb: Sandbox) -> None:
    code = "def f(s):\n    print('\\udc80 lone')\n    return [s, '\\ud800']\n"
    result = sb.call_function(code, "f", {"s": "bad \udcff surrogate"})
    assert result.ok, result
    assert "lone" in result.stdout and "\udc80" not in result.stdout
    assert result.value == ["bad \udcff surrogate", "\ud800"]
    assert result.value_json is not None and result.value_json.isascii()


def test_forged_guest_output_cannot_crash_the_host(sb: Sandbox) -> None:
    # The runner serialises the value with the json module the tool can patch: the tool makes
    # it emit 200,000 nested brackets, which the host's json parser cannot take.
    deep = "[" * 200_000 + "]" * 200_000
    code = f"import json\njson.dumps = lambda *a, **k: {deep!r}\ndef f():\n    return 1"
    result = sb.run(code, "f()")
    assert not result.ok
    assert result.error_type == "SandboxProtocolError"


def test_a_thousand_runs_of_a_nontrivial_tool_give_one_digest(sb: Sandbox) -> None:
    code = (
        "import hashlib, json, random, time, uuid\n"
        "def score(items):\n"
        "    rng = random.Random()\n"
        "    data = sorted(items, key=lambda s: hashlib.sha256(s.encode()).hexdigest())\n"
        "    return {'order': data, 'r': rng.random(), 't': time.time(),\n"
        "            'id': str(uuid.uuid4()), 'h': hash('abc') % 1000,\n"
        "            'set': list({'x', 'y', 'z', 'w'})}\n"
    )
    digests = {
        sb.run(code, "score(items=['a', 'b', 'c', 'd'])", seed=9).result_digest for _ in range(1000)
    }
    assert len(digests) == 1


# -- determinism across processes -------------------------------------------------------------


def test_same_code_call_and_seed_are_byte_identical_in_two_processes(
    sb: Sandbox, cache_dir: Path
) -> None:
    code = (
        "import random, time, uuid\n"
        "def roll(n):\n"
        "    print('rolling', n)\n"
        "    return {'dice': [random.randint(1, 6) for _ in range(n)], 't': time.time(),\n"
        "            'u': str(uuid.uuid4()), 'h': hash('stable?')}\n"
    )
    script = (
        "import json\n"
        "from sandbox import Sandbox\n"
        f"r = Sandbox({str(cache_dir)!r}).run({code!r}, 'roll(n=5)', seed=42)\n"
        "d = r.as_dict(); d.pop('duration_s')\n"
        "print(json.dumps(d, sort_keys=True))\n"
    )
    procs = [_spawn(script) for _ in range(2)]
    first, second = (_last_json_line(proc) for proc in procs)
    assert first == second
    local = sb.run(code, "roll(n=5)", seed=42)
    assert local.result_digest == first["result_digest"]
    assert local.fuel_used == first["fuel_used"]
    assert local.stdout == "rolling 5\n"


# -- stateless API ----------------------------------------------------------------------------


def test_call_function_with_json_arguments_returns_the_value(sb: Sandbox) -> None:
    result = sb.call_function(SMALL_TOOL, "get_weather", {"city": "tokyo"})
    assert result.ok and result.value["temp"] == 24.0
    assert result.result_digest == sb.run(SMALL_TOOL, "get_weather(city='tokyo')").result_digest


def test_missing_tool_function_is_reported(sb: Sandbox) -> None:
    result = sb.run(SMALL_TOOL, "get_forecast(city='Paris')")
    assert result.error_type == "ToolNotFound"


def test_tool_that_replaces_state_with_a_non_dict_fails_cleanly(sb: Sandbox) -> None:
    session = Session(sb, Environment("def wipe():\n    global STATE\n    STATE = 5", {"a": 1}))
    result = session.call("wipe()")
    assert result.error_type == "InvalidState"
    assert session.state == {"a": 1}


def test_state_passed_to_a_stateless_call_comes_back_changed(sb: Sandbox) -> None:
    code = "def bump(by):\n    STATE['n'] = STATE.get('n', 0) + by\n    return STATE['n']"
    result = sb.run(code, "bump(by=2)", state={"n": 40})
    assert result.ok and result.value == 42
    assert result.state == {"n": 42}


# -- stateful sessions ------------------------------------------------------------------------


def test_booking_changes_later_lookups(sb: Sandbox) -> None:
    session = Session(sb, Environment(BOOKING_TOOL, BOOKING_STATE), seed=5)
    before = session.call("search(origin='CDG', dest='JFK')").value
    assert [f["seats"] for f in before] == [12, 3]
    assert session.call("book(flight_id='AF2', passenger='ada')").ok
    after = session.call("search(origin='CDG', dest='JFK')").value
    assert [f["seats"] for f in after] == [12, 2]
    assert session.call("bookings(passenger='ada')").value == [
        {"id": "B1", "flight": "AF2", "passenger": "ada"}
    ]


def test_failed_call_rolls_back_its_state_changes(sb: Sandbox) -> None:
    environment = Environment(BOOKING_TOOL, BOOKING_STATE)
    session = Session(sb, environment)
    for _ in range(3):
        assert session.call("book(flight_id='AF2', passenger='x')").ok
    digest = session.state_digest
    full = session.call("book(flight_id='AF2', passenger='y')")
    assert full.error_type == "ValueError" and session.state_digest == digest
    assert session.log[-1].ok is False


def test_session_replayed_from_its_log_gives_the_same_final_state_digest(sb: Sandbox) -> None:
    environment = Environment(BOOKING_TOOL, BOOKING_STATE)
    session, results = run_session(sb, environment, booking_calls(20), seed=11)
    log = [CallRecord.from_dict(json.loads(json.dumps(r.as_dict()))) for r in session.log]
    replayed, replay_results = Session.replay(sb, environment, log, seed=11)
    assert replayed.state_digest == session.state_digest
    assert [r.value_json for r in replay_results] == [r.value_json for r in results]
    tampered = [*log[:3], CallRecord(**{**log[3].as_dict(), "result_digest": "sha256:bad"})]
    with pytest.raises(ReplayMismatchError):
        Session.replay(sb, environment, tampered, seed=11)


# -- worker pool ------------------------------------------------------------------------------


def test_pool_matches_single_process_results(sb: Sandbox, cache_dir: Path) -> None:
    requests = [RunRequest(SMALL_TOOL, SMALL_CALL, seed=i) for i in range(40)]
    environment = Environment(BOOKING_TOOL, BOOKING_STATE)
    with SandboxPool(2, cache_dir) as pool:
        pooled = pool.run_many(requests, chunksize=4)
        outcomes = pool.run_sessions(environment, [booking_calls(8)] * 2, seeds=[0, 1])
    local = [sb.run(r.code, r.call, seed=r.seed) for r in requests]
    assert [r.result_digest for r in pooled] == [r.result_digest for r in local]
    session, _ = run_session(sb, environment, booking_calls(8), seed=1)
    assert outcomes[1].final_state_digest == session.state_digest
    assert outcomes[1].log == session.log


# -- CLI --------------------------------------------------------------------------------------


def test_cli_run_prints_the_value(cache_dir: Path, tmp_path: Path) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text("def f(x=1):\n    return {'double': x * 2}\n")
    runner = CliRunner()
    args = ["run", str(tool), "--call", "f(x=21)", "--cache-dir", str(cache_dir)]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["value"] == {"double": 42}
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and '{"double":42}' in text.output


def test_cli_reports_errors_without_tracebacks(cache_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.py"), "--call", "f()"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    tool = tmp_path / "tool.py"
    tool.write_text("def f():\n    return 1\n")
    bad = runner.invoke(
        app, ["run", str(tool), "--call", "os.system('x')", "--cache-dir", str(cache_dir)]
    )
    assert bad.exit_code == 1 and "InvalidCall" in bad.output
    for command in ([], ["run"], ["bench"]):
        assert runner.invoke(app, [*command, "--help"]).exit_code == 0


def test_session_state_wins_over_a_default_state_the_code_assigns(sb: Sandbox) -> None:
    code = "STATE = {'n': 0}\ndef bump():\n    STATE['n'] += 1\n    return STATE['n']\n"
    session = Session(sb, Environment(code=code, initial_state={"n": 10}))
    assert [session.call("bump()").value for _ in range(3)] == [11, 12, 13]
    assert session.state == {"n": 13}
    assert sb.run(code, "bump()").value == 1  # without a session state, the code's default


def test_a_parameter_name_that_is_not_an_identifier_reaches_the_tool(sb: Sandbox) -> None:
    code = "def get_user(**kwargs):\n    return {'id': kwargs['user-id']}\n"
    result = sb.run(code, "get_user(**{'user-id': 'u1'})")
    assert result.ok and result.value == {"id": "u1"}
