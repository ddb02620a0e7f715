"""The Spark bridge: pinned distributed reads, validated distributed writes, the cluster path."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyspark
import pytest
from factories import servers_table, tools_table

from jobs.graph import BuildToolGraph, GraphParams
from jobs.ingest import IngestCatalog, IngestParams
from jobs.runner import run_job
from jobs.spark import (
    POSITION,
    SparkConfig,
    SparkSessionFactory,
    map_table,
    read_table,
    table_slices,
    write_table,
)
from lake import Lake, SchemaMismatchError
from schemas import Reject, Tool, ToolServer


@pytest.fixture(scope="module")
def spark_factory() -> Iterator[SparkSessionFactory]:
    factory = SparkSessionFactory(SparkConfig(master="local[2]", python=sys.executable))
    yield factory
    factory.stop()


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="not a Spark master URL"):
        SparkConfig(master="local[0]")
    with pytest.raises(ValueError, match="shuffle_partitions must be at least 1"):
        SparkConfig(shuffle_partitions=0)
    with pytest.raises(ValueError, match="does not exist"):
        SparkConfig(python="/nowhere/python")
    conf = SparkConfig(master="spark://127.0.0.1:7077", extra_conf=(("spark.x", "1"),)).conf()
    assert conf["spark.pyspark.python"] == sys.executable
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.x"] == "1"


@pytest.mark.slow
def test_read_table_returns_the_pinned_version(
    lake: Lake,
    spark_factory: SparkSessionFactory,
    sample_rows: tuple[list[ToolServer], list[Tool]],
) -> None:
    servers, tools = sample_rows
    lake.append("tool_servers", servers_table(servers))
    lake.append("tools", tools_table(tools[:10]))
    lake.append("tools", tools_table(tools[10:20]))  # a second fragment
    old = lake.read("tools")
    assert len(old.dataset.get_fragments()) == 2
    spark = spark_factory()

    df = read_table(spark, old)
    assert df.rdd.getNumPartitions() == 2  # one task per fragment
    assert df.columns == old.schema.names
    assert _sorted(df.toArrow()) == _sorted(old.to_arrow())

    lake.append("tools", tools_table(tools[20:]))
    new = lake.read("tools")
    assert new.version > old.version
    assert read_table(spark, old).count() == 20
    assert _sorted(read_table(spark, old).toArrow()) == _sorted(old.to_arrow())
    assert _sorted(read_table(spark, new).toArrow()) == _sorted(new.to_arrow())
    assert read_table(spark, new).count() == len(tools)


@pytest.mark.slow
def test_sliced_projected_reads_cover_every_row_once_and_positions_read_back(
    lake: Lake,
    spark_factory: SparkSessionFactory,
    sample_rows: tuple[list[ToolServer], list[Tool]],
) -> None:
    _, tools = sample_rows
    for start in (0, 7, 20):  # three fragments of unequal sizes
        lake.append("tools", tools_table(tools[start : start + (7 if start == 0 else 13)]))
    view = lake.read("tools")
    slices = table_slices(view, 8)
    assert len(slices) >= 8
    assert sum(s.rows for s in slices) == view.count_rows()
    assert [s.start for s in slices] == list(
        itertools.accumulate([0] + [s.rows for s in slices[:-1]])
    )

    df = map_table(spark_factory(), view, None, columns=["name", "id"], min_tasks=8, positions=True)
    assert df.rdd.getNumPartitions() == len(slices)
    assert df.columns == ["name", "id", POSITION]
    got = df.toArrow()
    assert sorted(got[POSITION].to_pylist()) == list(range(view.count_rows()))
    assert sorted(got["id"].to_pylist()) == sorted(view.to_arrow()["id"].to_pylist())
    back = view.take(got[POSITION].to_numpy(), columns=["id", "name"])
    assert back.to_pylist() == got.select(["id", "name"]).to_pylist()


def test_reads_refuse_a_column_the_table_lacks(
    lake: Lake, spark_factory: SparkSessionFactory, sample_rows
) -> None:
    lake.append("tools", tools_table(sample_rows[1][:3]))
    with pytest.raises(ValueError, match=r"tools has no column \['nmae'\]"):
        read_table(spark_factory(), lake.read("tools"), columns=["id", "nmae"])


@pytest.mark.slow
def test_write_table_matches_columns_by_name_and_rejects_bad_rows(
    lake: Lake,
    spark_factory: SparkSessionFactory,
    sample_rows: tuple[list[ToolServer], list[Tool]],
) -> None:
    _, tools = sample_rows
    spark = spark_factory()
    good = tools_table(tools)
    # Reversed column order: the column-order hazard (Lance maps columns by field id).
    reversed_names = list(reversed(good.column_names))
    bad = pa.Table.from_pylist(
        [
            {**tools[0].to_record(), "id": "tool-not-a-hash", "name": "bad_id"},
            {
                **tools[1].to_record(),
                "parameters": "[1, 2]",
                "id": "tool-" + "0" * 24,
                "name": "bad_json",
            },
        ],
        schema=good.schema,
    )
    frame = pa.concat_tables([good, bad]).select(reversed_names)
    df = spark.createDataFrame(frame)
    assert df.columns == reversed_names

    events: list[tuple[str, int, int]] = []
    with lake.run("spark-write", {"case": "order"}, seed=0, inputs={}) as run:
        summary = write_table(
            df, run, "tools", source="test", partitions=3, progress=lambda *e: events.append(e)
        )
    assert summary.rows_in == len(tools) + 2
    assert summary.rows == len(tools)
    assert summary.rejected == 2
    assert summary.reject_reasons == {"invalid_id": 1, "invalid_json": 1}
    assert summary.partitions == 3

    written = lake.read("tools").to_arrow()
    expected = good.drop_columns(["run_id"])
    assert _sorted(written.drop_columns(["run_id"])) == _sorted(expected)
    assert set(written["run_id"].to_pylist()) == {run.run_id}

    rejects = [Reject.from_record(r) for r in lake.read("rejects").to_arrow().to_pylist()]
    assert sorted(r.reason.split(":")[0] for r in rejects) == ["invalid_id", "invalid_json"]
    assert {r.table for r in rejects} == {"tools"}
    assert {r.run_id for r in rejects} == {run.run_id}
    assert any("bad_id" in r.payload for r in rejects)

    assert ("write tools: rows written", len(tools), len(tools) + 2) in events
    stages = [e for e in events if ": stage " in e[0]]
    assert stages and stages[-1][1] == stages[-1][2] == 3  # the write stage, all tasks done


@pytest.mark.slow
def test_write_table_refuses_unknown_columns(
    lake: Lake,
    spark_factory: SparkSessionFactory,
    sample_rows: tuple[list[ToolServer], list[Tool]],
) -> None:
    _, tools = sample_rows
    df = spark_factory().createDataFrame(
        tools_table(tools[:2]).append_column("extra", pa.array([1, 2]))
    )
    run = lake.run("spark-write", {"case": "unknown"}, seed=0, inputs={})
    with run, pytest.raises(SchemaMismatchError, match="no column"):
        write_table(df, run, "tools", source="test")


@pytest.mark.slow
def test_write_table_is_deterministic(
    tmp_path: Path,
    spark_factory: SparkSessionFactory,
    sample_rows: tuple[list[ToolServer], list[Tool]],
) -> None:
    _, tools = sample_rows
    spark = spark_factory()
    table = tools_table(tools)
    hashes = []
    for name, order in (("a", table), ("b", table.take(list(reversed(range(len(tools))))))):
        lake = Lake(tmp_path / name)
        df = spark.createDataFrame(order).repartition(5)
        with lake.run("spark-write", {}, seed=0, inputs={}) as run:
            write_table(df, run, "tools", source="test")
        commit = run.result.commit_for("tools")
        assert commit is not None
        hashes.append(commit.content_hash)
    assert hashes[0] == hashes[1]


# -- the cluster path ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {log}:\n{log.read_text(errors='replace')}")


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[str]:
    """A Spark standalone master and one 1-core worker on loopback, from pyspark's own jars."""
    spark_home = Path(pyspark.__file__).resolve().parent
    classpath = str(spark_home / "jars" / "*")
    core = next((spark_home / "jars").glob("spark-core_*.jar")).name
    scala = core.removeprefix("spark-core_").split("-", 1)[0]
    # The worker launches executors from SPARK_HOME's jars; a pip-installed pyspark has no
    # build directories to infer the Scala version from, so name it.
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_SCALA_VERSION": scala,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    master_log = tmp_path / "master.log"
    worker_log = tmp_path / "worker.log"
    java = ["java", "-Xmx512m", "-cp", classpath]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with master_log.open("wb") as out:
            master = subprocess.Popen(
                [
                    *java,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--webui-port",
                    str(_free_port()),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        processes.append(master)
        with worker_log.open("wb") as out:
            worker = subprocess.Popen(
                [
                    *java,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(_free_port()),
                    "--work-dir",
                    str(tmp_path / "work"),
                    url,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        processes.append(worker)  # it retries until the master is up
        _wait_for(master_log, "Registering worker 127.0.0.1", master, 90)
        yield url
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _edges_hash(root: Path, factory: SparkSessionFactory) -> str:
    lake = Lake(root)
    run_job(lake, IngestCatalog(IngestParams()))
    result = run_job(lake, BuildToolGraph(GraphParams()), spark_factory=factory)
    commit = result.run.commit_for("tool_edges")
    assert commit is not None and commit.rows_written > 0
    return commit.content_hash


@pytest.mark.slow
def test_graph_job_on_a_standalone_cluster_matches_local_mode(
    tmp_path: Path, spark_factory: SparkSessionFactory, standalone_cluster: str
) -> None:
    local_hash = _edges_hash(tmp_path / "local", spark_factory)
    spark_factory.stop()  # one SparkContext per process: the cluster session comes next

    cluster = SparkSessionFactory(
        SparkConfig(
            master=standalone_cluster,
            python=sys.executable,
            extra_conf=(
                ("spark.driver.host", "127.0.0.1"),
                ("spark.driver.bindAddress", "127.0.0.1"),
                ("spark.executor.memory", "512m"),
                ("spark.cores.max", "1"),
            ),
        )
    )
    try:
        session = cluster()
        assert session.sparkContext.master == standalone_cluster
        cluster_hash = _edges_hash(tmp_path / "cluster", cluster)
        executors = session.sparkContext.statusTracker().getExecutorInfos()
        assert len(executors) >= 2  # the driver and the worker's executor
    finally:
        cluster.stop()
    assert cluster_hash == local_hash


WORKER_PYTHON = """
import sys
from jobs.spark import SparkConfig, SparkSessionFactory

factory = SparkSessionFactory(SparkConfig(master="local[1]", python=sys.executable))
try:
    def where(rows):
        import lance  # only the venv has it
        import sys as worker_sys
        for _ in rows:
            yield (worker_sys.executable, lance.__name__)
    print(factory().sparkContext.parallelize([0], 1).mapPartitions(where).collect()[0][0])
finally:
    factory.stop()
"""


def test_workers_run_the_configured_python_without_pyspark_env_vars() -> None:
    """A user running ``astra`` outside ``make`` has no PYSPARK_PYTHON set; the workers must
    still run the configured interpreter (the system python3 cannot import lance)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PYTHON],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == sys.executable


QUIET_START = """
from jobs.spark import SparkConfig, SparkSessionFactory
factory = SparkSessionFactory(SparkConfig(master="local[1]"))
print(factory().range(5).count())
factory.stop()
"""


def test_a_session_starts_without_spark_log_banners() -> None:
    """Spark's default-profile banner, its default shell level line and the native-hadoop
    warning do not reach a user's terminal on every command."""
    done = subprocess.run(
        [sys.executable, "-c", QUIET_START],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "5"
    for banner in ("default log4j profile", "Setting default log level", "NativeCodeLoader"):
        assert banner not in done.stderr, done.stderr
