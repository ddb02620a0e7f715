"""Probe: LanceDB / Lance tables on a loopback S3-compatible store (moto), inside pytest.

Skips only when ``moto[server]`` cannot be imported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import lance
import lancedb
import pyarrow as pa
import pytest

if TYPE_CHECKING:
    from s3_server import S3Server


import s3_server as s3_server_module

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with s3_server_module.start_s3_server() as server:
        yield server


@pytest.fixture
def storage_options(s3_server: S3Server) -> dict[str, str]:
    return s3_server.storage_options


@pytest.fixture
def db_uri(s3_server: S3Server) -> str:
    return s3_server.unique_uri("db")


def _rows(n0: int, n1: int, tag: str = "v") -> pa.Table:
    ids = list(range(n0, n1))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "text": pa.array([f"{tag}{i}" for i in ids], pa.string()),
            "score": pa.array([i / 10 for i in ids], pa.float64()),
        }
    )


def _sorted(table: Any) -> pa.Table:
    arrow = table if isinstance(table, pa.Table) else table.to_arrow()
    return arrow.sort_by("id")


# --------------------------------------------------------------------------- the server


def test_server_is_loopback_with_dummy_credentials(s3_server: S3Server) -> None:
    url = urlparse(s3_server.endpoint_url)
    assert url.scheme == "http"
    assert url.hostname == "127.0.0.1"
    assert url.port
    assert s3_server.running
    opts = s3_server.storage_options
    assert opts["aws_endpoint"] == s3_server.endpoint_url
    assert opts["aws_access_key_id"] == s3_server_module.DUMMY_ACCESS_KEY_ID
    assert opts["allow_http"] == "true"
    assert s3_server.client().head_bucket(Bucket=s3_server.bucket)
    uri = s3_server.unique_uri("x")
    assert uri.startswith(f"s3://{s3_server.bucket}/x-")
    assert uri != s3_server.unique_uri("x")


def test_server_honours_if_none_match(s3_server: S3Server) -> None:
    """Lance's S3 commit handler relies on PutObject with ``If-None-Match: *``."""
    from botocore.exceptions import ClientError

    client = s3_server.client()
    key = s3_server.unique_uri("cond").split("/", 3)[3]
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert excinfo.value.response["Error"]["Code"] == "PreconditionFailed"
    body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    assert body == b"first"


def test_stop_is_idempotent() -> None:
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = s3_server_module.start_s3_server()
    try:
        assert server.client().head_bucket(Bucket=server.bucket)
    finally:
        server.stop()
    server.stop()
    assert not server.running


# --------------------------------------------------------------------------- lancedb


def test_connect_create_add_and_time_travel(db_uri: str, storage_options: dict[str, str]) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    first = _rows(0, 10)
    table = db.create_table("events", first)
    v1 = table.version
    assert _sorted(table).equals(first)

    second = _rows(10, 15)
    table.add(second)
    assert table.version > v1
    assert table.count_rows() == 15
    assert _sorted(table).equals(pa.concat_tables([first, second]))

    assert "events" in db.list_tables().tables
    reopened = lancedb.connect(db_uri, storage_options=storage_options).open_table("events")
    assert reopened.version == table.version
    assert _sorted(reopened).equals(pa.concat_tables([first, second]))

    old = db.open_table("events", version=v1)
    assert old.version == v1
    assert _sorted(old).equals(first)

    # the same table through pylance directly
    ds = lance.dataset(table.uri, storage_options=storage_options)
    assert table.uri.startswith(db_uri)
    assert ds.version == table.version
    assert _sorted(ds.to_table()).equals(pa.concat_tables([first, second]))
    assert _sorted(
        lance.dataset(table.uri, version=v1, storage_options=storage_options).to_table()
    ).equals(first)


def test_tags(db_uri: str, storage_options: dict[str, str]) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    table = db.create_table("tagged", _rows(0, 5))
    v1 = table.version
    table.tags.create("baseline", v1)
    table.add(_rows(5, 8))
    assert table.count_rows() == 8

    assert table.tags.list()["baseline"]["version"] == v1
    assert table.tags.get_version("baseline") == v1

    by_tag = db.open_table("tagged")
    by_tag.checkout("baseline")
    assert by_tag.version == v1
    assert _sorted(by_tag).equals(_rows(0, 5))

    ds = lance.dataset(table.uri, version="baseline", storage_options=storage_options)
    assert ds.version == v1
    assert _sorted(ds.to_table()).equals(_rows(0, 5))


def test_write_fragments_then_commit_append(db_uri: str, storage_options: dict[str, str]) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    table = db.create_table("frags", _rows(0, 4))
    read_version = table.version

    extra = _rows(100, 130, tag="frag")
    fragments = lance.fragment.write_fragments(
        extra, table.uri, max_rows_per_file=10, storage_options=storage_options
    )
    assert len(fragments) == 3
    committed = lance.LanceDataset.commit(
        table.uri,
        lance.LanceOperation.Append(fragments),
        read_version=read_version,
        storage_options=storage_options,
    )
    assert committed.version == read_version + 1
    expected = pa.concat_tables([_rows(0, 4), extra])
    assert _sorted(committed.to_table()).equals(expected)

    table.checkout_latest()
    assert table.version == committed.version
    assert _sorted(table).equals(expected)


def test_write_dataset_and_commit_without_lancedb(s3_server: S3Server) -> None:
    uri = s3_server.unique_uri("plain") + ".lance"
    opts = s3_server.storage_options
    ds = lance.write_dataset(_rows(0, 3), uri, storage_options=opts)
    assert ds.version == 1
    ds = lance.write_dataset(_rows(3, 6), uri, mode="append", storage_options=opts)
    assert ds.version == 2
    frags = lance.fragment.write_fragments(_rows(6, 9), uri, storage_options=opts)
    ds = lance.LanceDataset.commit(
        uri, lance.LanceOperation.Append(frags), read_version=2, storage_options=opts
    )
    assert ds.version == 3
    assert _sorted(lance.dataset(uri, storage_options=opts).to_table()).equals(_rows(0, 9))


def test_restore(db_uri: str, storage_options: dict[str, str]) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    table = db.create_table("restorable", _rows(0, 6))
    v1 = table.version
    table.add(_rows(6, 9))
    table.delete("id < 3")
    assert table.count_rows() == 6
    latest = table.version

    table.restore(v1)
    assert table.version == latest + 1  # restore commits a new version
    assert _sorted(table).equals(_rows(0, 6))
    reopened = db.open_table("restorable")
    assert reopened.version == latest + 1
    assert _sorted(reopened).equals(_rows(0, 6))


def test_merge_insert(db_uri: str, storage_options: dict[str, str]) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    table = db.create_table("upserts", _rows(0, 5))
    v1 = table.version

    updates = pa.table(
        {
            "id": pa.array([3, 4, 5, 6], pa.int64()),
            "text": pa.array(["new3", "new4", "new5", "new6"]),
            "score": pa.array([30.0, 40.0, 50.0, 60.0]),
        }
    )
    result = (
        table.merge_insert("id")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute(updates)
    )
    assert result.num_updated_rows == 2
    assert result.num_inserted_rows == 2
    assert table.version > v1

    expected = pa.concat_tables([_rows(0, 3), updates])
    assert _sorted(table).equals(expected)
    reopened = lancedb.connect(db_uri, storage_options=storage_options).open_table("upserts")
    assert _sorted(reopened).equals(expected)


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("shared_handle", [False, True], ids=["own-handles", "shared-handle"])
@pytest.mark.parametrize("writers", [2, 8])
def test_concurrent_adds_all_land(
    db_uri: str, storage_options: dict[str, str], writers: int, shared_handle: bool
) -> None:
    db = lancedb.connect(db_uri, storage_options=storage_options)
    base = db.create_table("concurrent", _rows(0, 1))
    v0 = base.version
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            table = (
                base
                if shared_handle
                else lancedb.connect(db_uri, storage_options=storage_options).open_table(
                    "concurrent"
                )
            )
            barrier.wait(timeout=30)
            table.add(_rows(1000 * (k + 1), 1000 * (k + 1) + 5, tag=f"w{k}-"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors

    final = db.open_table("concurrent")
    assert final.version == v0 + writers
    assert final.count_rows() == 1 + 5 * writers
    expected = pa.concat_tables(
        [_rows(0, 1)]
        + [_rows(1000 * (k + 1), 1000 * (k + 1) + 5, tag=f"w{k}-") for k in range(writers)]
    )
    assert _sorted(final).equals(expected)
    # every version is readable and each one added exactly one batch
    counts = [
        lance.dataset(final.uri, version=v, storage_options=storage_options).count_rows()
        for v in range(v0, v0 + writers + 1)
    ]
    assert counts == [1 + 5 * i for i in range(writers + 1)]
