"""A loopback S3-compatible object store (moto) for tests that put Lance tables on ``s3://``.

Nothing happens at import time: moto and boto3 are imported only when a server is started,
so this module can be imported (and doctest-collected) where the ``test`` extra is missing.

Typical use in a test module or ``conftest.py``::

    @pytest.fixture(scope="session")
    def s3_server() -> Iterator[S3Server]:
        pytest.importorskip("moto.server", reason="moto[server] is not installed")
        with start_s3_server() as server:
            yield server

    def test_x(s3_server: S3Server) -> None:
        uri = s3_server.unique_uri("db")  # s3://<bucket>/db-<hex>
        db = lancedb.connect(uri, storage_options=s3_server.storage_options)

The server binds 127.0.0.1 on a port picked by the kernel, answers only to the dummy
credentials below, and the storage options pin the endpoint, region and credentials
explicitly, so neither boto3 nor Lance ever looks up real AWS credentials or endpoints.

Caveats (moto 5.x):

* moto keeps its state in process-global backends. Every server therefore gets its own
  randomly named bucket, and an in-process ``moto.mock_aws`` (which resets those backends
  on entry and exit) must not run while a server is in use.
* Lance commits on ``s3://`` with ``PutObject`` + ``If-None-Match: *`` (its only commit
  strategy for S3; there is no DynamoDB and no storage option to change it). moto honours
  the header, but checks and writes in two steps, so it is not a strict atomicity guarantee
  under truly simultaneous commits.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

S3Client = Any  # a boto3 S3 client; boto3 ships no static types of its own

__all__ = [
    "DUMMY_ACCESS_KEY_ID",
    "DUMMY_SECRET_ACCESS_KEY",
    "LOOPBACK_HOST",
    "S3Server",
    "s3_storage_options",
    "start_s3_server",
    "unique_s3_uri",
]

LOOPBACK_HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
DUMMY_ACCESS_KEY_ID = "astra-test-access-key"
DUMMY_SECRET_ACCESS_KEY = "astra-test-secret-key"  # a dummy, only ever sent to loopback


def s3_storage_options(
    endpoint_url: str,
    *,
    region: str = DEFAULT_REGION,
    access_key_id: str = DUMMY_ACCESS_KEY_ID,
    secret_access_key: str = DUMMY_SECRET_ACCESS_KEY,
) -> dict[str, str]:
    """Lance / LanceDB ``storage_options`` for an S3-compatible store at ``endpoint_url``.

    >>> opts = s3_storage_options("http://127.0.0.1:9")
    >>> opts["aws_endpoint"], opts["allow_http"], opts["aws_region"]
    ('http://127.0.0.1:9', 'true', 'us-east-1')
    """
    return {
        # object_store (Rust) keys; the short aliases endpoint / access_key_id /
        # secret_access_key / region work too.
        "aws_endpoint": endpoint_url,
        "aws_access_key_id": access_key_id,
        "aws_secret_access_key": secret_access_key,
        "aws_region": region,
        # The loopback endpoint is plain http; without this every request is refused.
        "allow_http": "true",
        # moto serves path-style URLs (http://host:port/bucket/key).
        "aws_virtual_hosted_style_request": "false",
    }


def unique_s3_uri(bucket: str, name: str = "t") -> str:
    """A fresh ``s3://bucket/<name>-<hex>`` URI that no earlier call returned.

    >>> uri = unique_s3_uri("my-bucket", "db")
    >>> uri.startswith("s3://my-bucket/db-"), uri != unique_s3_uri("my-bucket", "db")
    (True, True)
    """
    name = name.strip("/") or "t"
    return f"s3://{bucket}/{name}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server on loopback with one empty bucket; see :func:`start_s3_server`."""

    endpoint_url: str
    bucket: str
    region: str = DEFAULT_REGION
    access_key_id: str = DUMMY_ACCESS_KEY_ID
    secret_access_key: str = field(default=DUMMY_SECRET_ACCESS_KEY, repr=False)
    startup_seconds: float = 0.0
    _server: Any = field(default=None, repr=False, compare=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def storage_options(self) -> dict[str, str]:
        """Options for ``lancedb.connect`` / ``lance.dataset`` etc. (a fresh dict per access)."""
        return s3_storage_options(
            self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def unique_uri(self, name: str = "t") -> str:
        """A fresh ``s3://<bucket>/<name>-<hex>`` URI inside this server's bucket."""
        return unique_s3_uri(self.bucket, name)

    def client(self) -> S3Client:
        """A boto3 S3 client bound to this server (dummy credentials, loopback endpoint)."""
        return _boto3_client(
            self.endpoint_url, self.region, self.access_key_id, self.secret_access_key
        )

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def stop(self) -> None:
        """Empty and delete the bucket (best effort), then shut the server down. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            _delete_bucket(self.client(), self.bucket)
        except Exception as exc:  # cleanup must not mask the test outcome
            logging.getLogger(__name__).debug("could not delete bucket %s: %s", self.bucket, exc)
        finally:
            if self._server is not None:
                self._server.stop()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_s3_server(
    bucket: str | None = None,
    *,
    region: str = DEFAULT_REGION,
    quiet: bool = True,
) -> S3Server:
    """Start moto's ``ThreadedMotoServer`` on 127.0.0.1 (free port) and create a bucket.

    ``bucket`` defaults to ``astra-lake-test-<hex>``, unique per server because moto's state
    is process-global. ``quiet`` raises the ``werkzeug`` logger to WARNING so the per-request
    access log (including the expected 404s and 412s Lance provokes) stays out of test output.
    Raises ``ImportError`` when ``moto[server]`` or ``boto3`` is missing.
    """
    from moto.server import ThreadedMotoServer

    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    started = time.perf_counter()
    # port=0: the kernel picks a free port, so there is no pick-then-bind race.
    server = ThreadedMotoServer(ip_address=LOOPBACK_HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        bucket = bucket or f"astra-lake-test-{uuid.uuid4().hex[:12]}"
        client = _boto3_client(endpoint_url, region, DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY)
        if region == "us-east-1":
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except BaseException:
        server.stop()
        raise
    return S3Server(
        endpoint_url=endpoint_url,
        bucket=bucket,
        region=region,
        startup_seconds=time.perf_counter() - started,
        _server=server,
    )


def _boto3_client(
    endpoint_url: str, region: str, access_key_id: str, secret_access_key: str
) -> S3Client:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=None,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _delete_bucket(client: S3Client, bucket: str) -> None:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
    client.delete_bucket(Bucket=bucket)
