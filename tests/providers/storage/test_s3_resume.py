"""An interrupted multipart upload is resumed, not restarted, after a worker restart (a
real process killed mid-object, a real moto server): the parts the server already holds
are not sent again, nothing is visible before the end, and different bytes are never
mixed in."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

from drfleet.providers.storage.s3 import S3Store
from tests.fixtures.util import wait_for

MiB = 1 << 20
PART = 5 * MiB


def payload(seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(3 * PART + 1234)


def _store(s3_server, bucket) -> S3Store:
    return S3Store(**s3_server.store_settings(bucket), part_size=PART, parts_in_flight=1)


def _worker_killed_after_two_parts(s3_server, bucket, key) -> None:
    """A separate process streams the object and dies (SIGKILL-like os._exit) once two
    parts are on the server."""
    script = textwrap.dedent(f"""
        import os, random
        from drfleet.providers.storage.s3 import S3Store
        store = S3Store(**{s3_server.store_settings(bucket)!r}, part_size={PART}, parts_in_flight=1)
        data = random.Random(7).randbytes({3 * PART + 1234})
        writer = store.writer({key!r})
        writer.write(data[:2 * {PART} + 10])   # part 1 sent, part 2 filled
        writer.write(data[2 * {PART} + 10:2 * {PART} + 20])
        writer._send_part(writer._buffer); writer._buffer = bytearray()  # part 2 goes out too
        writer._collect(block=True); writer._collect(block=True)
        os._exit(9)  # the worker dies: no abort, no complete
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 9, done.stderr


def test_a_restarted_worker_resumes_the_upload_and_sends_only_the_missing_parts(s3_server, s3_bucket):
    key = "datasets/db/backups/b1/data-0000.zst.dfe"
    _worker_killed_after_two_parts(s3_server, s3_bucket, key)
    store = _store(s3_server, s3_bucket)
    [left] = store.list_incomplete_uploads()
    assert left.key == key and not store.exists(key) and list(store.list()) == []

    data = payload()
    writer = store.writer(key)
    writer.write(data)
    assert not store.exists(key)  # still nothing visible
    writer.commit()
    assert writer.resumed_upload == left.upload_id and writer.parts_reused == 2
    assert store.get_bytes(key) == data
    assert store.list_incomplete_uploads() == []


def test_different_bytes_under_the_same_key_are_uploaded_in_full(s3_server, s3_bucket):
    key = "obj"
    _worker_killed_after_two_parts(s3_server, s3_bucket, key)
    store = _store(s3_server, s3_bucket)
    other = payload(seed=8)
    with store.writer(key) as writer:
        writer.write(other)
        writer.commit()
    assert writer.parts_reused == 0
    assert store.get_bytes(key) == other
    wait_for(lambda: store.list_incomplete_uploads() == [], timeout=5, what="no incomplete upload")
