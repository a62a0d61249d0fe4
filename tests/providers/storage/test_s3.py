"""S3Store beyond the shared contract, against a real moto server: multipart cleanup on
every failure path, outages, storage classes, memory bounds, error mapping."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from drfleet.providers.storage.errors import (
    ObjectArchived,
    ObjectExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from drfleet.providers.storage.s3 import S3Store
from tests.fixtures.s3_server import TcpRelay
from tests.fixtures.util import free_port

MiB = 1 << 20
PART = 5 * MiB
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(s3_server, s3_bucket) -> S3Store:
    return S3Store(**s3_server.store_settings(s3_bucket), part_size=PART, prefix="p")


def operations(store: S3Store) -> list[str]:
    """Record the S3 operations ``store`` sends from now on."""
    seen: list[str] = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: seen.append(model.name))
    return seen


def fail_on(store: S3Store, operation: str, exc: Exception, *, after: int = 0) -> None:
    """Make the ``after + 1``-th and later ``operation`` calls of ``store`` raise ``exc``."""
    calls = []

    def hook(**_):
        calls.append(1)
        if len(calls) > after:
            raise exc

    store.client.meta.events.register(f"before-call.s3.{operation}", hook)


def write_parts(writer, parts: float) -> None:
    """Write ``parts * PART`` bytes in 1 MiB chunks."""
    remaining, chunk = int(parts * PART), memoryview(b"\x5a" * MiB)
    while remaining:
        writer.write(chunk[:remaining])
        remaining -= min(remaining, MiB)


# -- which requests are sent ---------------------------------------------------------------

def test_objects_up_to_one_part_are_one_put_object(store):
    sent = operations(store)
    for key, size in (("empty", 0), ("small", 1), ("exactly-one-part", PART)):
        with store.writer(key) as writer:
            writer.write(b"\1" * size)
            writer.commit()
    assert sent == ["PutObject"] * 3
    sent.clear()
    with store.writer("two-parts") as writer:
        writer.write(b"\1" * (PART + 1))
        writer.commit()
    assert sent == ["ListMultipartUploads",  # an interrupted upload of this key to resume?
                    "CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"]


def test_objects_live_under_the_store_prefix(s3_server, s3_bucket):
    left = S3Store(**s3_server.store_settings(s3_bucket), prefix="left/")
    right = S3Store(**s3_server.store_settings(s3_bucket), prefix="right")
    left.put_bytes("k", b"L")
    right.put_bytes("k", b"R")
    bucket_keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert bucket_keys == ["left/k", "right/k"]
    assert [i.key for i in left.list()] == ["k"]
    assert right.get_bytes("k") == b"R"


# -- storage classes -------------------------------------------------------------------------

def test_storage_class_is_recorded_on_the_object(s3_server, s3_bucket):
    store = S3Store(**s3_server.store_settings(s3_bucket), part_size=PART,
                    storage_class="DEEP_ARCHIVE")
    head = lambda key: s3_server.client().head_object(Bucket=s3_bucket, Key=key)
    store.put_bytes("ia", b"x", storage_class="STANDARD_IA")
    with store.writer("glacier", storage_class="GLACIER") as writer:  # multipart
        write_parts(writer, 1.5)
        writer.commit()
    store.put_bytes("default", b"x")  # the store's default class
    assert head("ia")["StorageClass"] == "STANDARD_IA"
    assert head("glacier")["StorageClass"] == "GLACIER"
    assert head("default")["StorageClass"] == "DEEP_ARCHIVE"
    assert store.get_bytes("ia") == b"x"
    assert store.stat("glacier").size == int(1.5 * PART)
    with pytest.raises(ObjectArchived) as caught:
        store.get_bytes("glacier")
    assert caught.value.facts["key"] == "glacier"


# -- failures during an upload leave nothing -------------------------------------------------

def test_failing_upload_part_aborts_the_multipart_upload(store):
    fail_on(store, "UploadPart", EndpointConnectionError(endpoint_url=store.endpoint), after=1)
    with pytest.raises(StoreUnavailable) as caught:
        with store.writer("doomed") as writer:
            write_parts(writer, 4)
            writer.commit()
    assert caught.value.facts["key"] == "doomed"
    assert caught.value.facts["endpoint"] == store.endpoint
    assert store.list_incomplete_uploads() == []
    assert not store.exists("doomed")


def test_failing_complete_aborts_the_multipart_upload(store):
    error = ClientError({"Error": {"Code": "InternalError", "Message": "boom"},
                         "ResponseMetadata": {"HTTPStatusCode": 500}}, "CompleteMultipartUpload")
    fail_on(store, "CompleteMultipartUpload", error)
    writer = store.writer("doomed")
    write_parts(writer, 2.5)
    with pytest.raises(StoreUnavailable):
        writer.commit()
    assert store.list_incomplete_uploads() == []
    assert not store.exists("doomed")


def test_outage_mid_upload_leaves_an_orphan_that_abort_incomplete_uploads_removes(
        s3_server, s3_bucket):
    with TcpRelay(s3_server.port) as relay:
        store = S3Store(**s3_server.store_settings(s3_bucket, relay.endpoint_url),
                        part_size=PART, max_attempts=2, connect_timeout=2, read_timeout=10)
        writer = store.writer("interrupted")
        write_parts(writer, 2.5)  # the multipart upload has started
        relay.cut()
        with pytest.raises(StoreUnavailable) as caught:
            write_parts(writer, 3)
            writer.commit()
        # The abort could not reach the endpoint either, and the error says so.
        assert any("cleaning up" in note for note in getattr(caught.value, "__notes__", []))
        relay.restore()
        assert [u.key for u in store.list_incomplete_uploads()] == ["interrupted"]
        assert not store.exists("interrupted")
        assert store.abort_incomplete_uploads() == 1
        assert store.list_incomplete_uploads() == []


def test_upload_of_a_killed_process_is_found_and_aborted(s3_server, s3_bucket):
    settings = s3_server.store_settings(s3_bucket)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from drfleet.providers.storage.s3 import S3Store
        store = S3Store(**{settings!r}, part_size={PART})
        writer = store.writer("killed")
        writer.write(b"k" * {2 * PART + 1})  # returns once the upload is created
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == -9
    store = S3Store(**settings)
    assert [u.key for u in store.list_incomplete_uploads()] == ["killed"]
    assert store.abort_incomplete_uploads(older_than_seconds=0) == 1
    assert store.list_incomplete_uploads() == []
    assert list(store.list()) == []


# -- unreachable endpoints and error mapping -------------------------------------------------

def test_unreachable_endpoint_raises_store_unavailable_without_secrets():
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3Store("backups", endpoint_url=endpoint, access_key_id="AKIA-VISIBLE-ID",
                    secret_access_key="very-secret-value", max_attempts=1, connect_timeout=2)
    calls = {"stat": lambda: store.stat("k"), "put": lambda: store.put_bytes("k", b"x"),
             "list": lambda: list(store.list()), "open": lambda: store.open("k")}
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable) as caught:
            call()
        message = str(caught.value)
        assert "backups" in message and endpoint in message, name
        assert "very-secret-value" not in message and "AKIA-VISIBLE-ID" not in message
    assert "very-secret-value" not in repr(store)


def test_missing_bucket_is_a_clear_error(s3_server):
    store = S3Store(**s3_server.store_settings("no-such-bucket-here"))
    with pytest.raises(StoreError, match="bucket does not exist") as caught:
        store.put_bytes("k", b"x")
    assert caught.value.facts["bucket"] == "no-such-bucket-here"


@pytest.mark.parametrize("code,status,expected", [
    ("NoSuchKey", 404, ObjectNotFound),
    ("AccessDenied", 403, StoreAccessDenied),
    ("SignatureDoesNotMatch", 403, StoreAccessDenied),
    ("PreconditionFailed", 412, ObjectExists),
    ("InvalidObjectState", 403, ObjectArchived),
    ("XMinioStorageFull", 507, StoreFull),
    ("SlowDown", 503, StoreUnavailable),
    ("InternalError", 500, StoreUnavailable),
    ("MalformedXML", 400, StoreError),
])
def test_client_errors_map_to_store_errors(code, status, expected):
    store = S3Store("b", endpoint_url="http://127.0.0.1:9", access_key_id="ID123",
                    secret_access_key="SECRET456")
    error = ClientError({"Error": {"Code": code, "Message": "key SECRET456 ID123"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    translated = store.translate(error, "k", "get_object")
    assert type(translated) is expected
    assert "SECRET456" not in str(translated) and "ID123" not in str(translated)


def test_conditional_put_fallback_for_providers_without_if_none_match(s3_server, s3_bucket):
    store = S3Store(**s3_server.store_settings(s3_bucket), conditional_put=False)
    sent = operations(store)
    store.put_bytes("k", b"1", if_absent=True)
    with pytest.raises(ObjectExists):
        store.put_bytes("k", b"2", if_absent=True)
    assert sent == ["HeadObject", "PutObject", "HeadObject"]
    assert store.get_bytes("k") == b"1"


# -- bounded memory --------------------------------------------------------------------------

def test_streaming_64_mib_holds_at_most_three_parts(store):
    chunk = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.writer("stream") as writer:
            for _ in range(64):
                writer.write(chunk)
                expected.update(chunk)
            writer.commit()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert writer.peak_buffered_bytes <= 3 * PART
    # Three parts, plus headroom: one hidden copy of a part anywhere would exceed it.
    assert traced_peak < 4 * PART, f"peak {traced_peak / MiB:.1f} MiB for a 64 MiB stream"
    with store.open("stream") as stream:
        actual = hashlib.sha256()
        while block := stream.read(4 * MiB):
            actual.update(block)
    assert actual.hexdigest() == expected.hexdigest()
