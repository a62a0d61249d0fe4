"""redis data source against real redis-server processes (tests/fixtures/redis_server.py)."""

from __future__ import annotations

import io
import os
import signal

import pytest

from drfleet.providers.datasources import redis as redis_source
from drfleet.providers.datasources.errors import InvalidSourceOptions, RestoreFailed, SourceToolFailed
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.util import free_port, port_open, wait_for

PASSWORD = "r3d:is@pw"
NO_DELAY = ["--repl-diskless-sync-delay", "0"]  # the default 5 s would only slow tests


def read_all(producer) -> bytes:
    chunks = []
    while chunk := producer.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def populate(server: RedisServer) -> None:
    db0 = server.client(0)
    db0.set("string", "value")
    db0.set(b"bin\x00key", b"\xff\x00\xfe" * 1000)
    db0.hset("hash", mapping={"a": "1", "b": "2", "c": "3"})
    db0.rpush("list", "z", "y", "x", "y")
    db0.sadd("set", "m1", "m2", "m3")
    db0.zadd("zset", {"low": 1.5, "high": 99, "tie-a": 5, "tie-b": 5})
    db0.xadd("stream", {"field": "v1"}, id="1-1")
    db0.xadd("stream", {"field": "v2"}, id="2-1")
    db0.set("expiring", "soon", ex=86400)
    db0.set("large", os.urandom(3 << 20))  # incompressible: the RDB spans many reads
    pipe = db0.pipeline()
    for i in range(3000):
        pipe.set(f"bulk:{i:05d}", "x" * (i % 50))
    pipe.execute()
    server.client(3).set("in-db-3", "three")


@pytest.fixture(params=["diskless", "disk"])
def source(request):
    """A populated server sending the RDB diskless ($EOF: marker) or from disk ($len)."""
    mode = "yes" if request.param == "diskless" else "no"
    server = RedisServer(password=PASSWORD,
                         extra_args=["--repl-diskless-sync", mode, *NO_DELAY]).start()
    populate(server)
    yield server
    server.cleanup()


@pytest.fixture
def target():
    server = RedisServer().start()
    yield server
    server.cleanup()


def restart(server: RedisServer):
    return lambda: (server.stop(), server.start())


def test_dump_restore_round_trip_gives_equal_fingerprints(source, target):
    with redis_source.dump(source.url) as producer:
        data = read_all(producer)
    assert data.startswith(b"REDIS")
    assert data[-9] == 0xFF  # RDB EOF opcode + 8-byte CRC: nothing (no $EOF: marker) after it
    assert isinstance(producer.position["master_repl_offset"], int)
    assert len(producer.position["replid"]) == 40

    redis_source.restore(target.url, io.BytesIO(data),
                         {"data_dir": str(target.dir), "restart": restart(target)})

    original = redis_source.fingerprint(source.url)
    restored = redis_source.fingerprint(target.url)
    assert original == restored
    assert original["databases"]["0"]["keys"] == 3009
    assert original["databases"]["3"]["keys"] == 1
    assert target.client(0).zrange("zset", 0, -1) == [b"low", b"tie-a", b"tie-b", b"high"]


def test_fingerprint_changes_when_one_value_changes(source):
    before = redis_source.fingerprint(source.url)
    source.client(0).lset("list", 2, "changed")
    after = redis_source.fingerprint(source.url)
    assert before["databases"]["3"] == after["databases"]["3"]
    assert before["databases"]["0"]["keys"] == after["databases"]["0"]["keys"]
    assert before["databases"]["0"]["checksum"] != after["databases"]["0"]["checksum"]


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_sampled_fingerprint_is_stable_and_bounded(source, target):
    with redis_source.dump(source.url) as producer:
        data = read_all(producer)
    redis_source.restore(target.url, io.BytesIO(data),
                         {"data_dir": str(target.dir), "restart": restart(target)})
    sampled = redis_source.fingerprint(source.url, {"max_keys": 300})
    assert sampled == redis_source.fingerprint(target.url, {"max_keys": 300})
    db0 = sampled["databases"]["0"]
    assert db0["mode"] == "sampled" and 100 < db0["hashed_keys"] < 600


def test_wrong_password_fails_at_once_without_the_password(source):
    url = f"redis://:nope-secret@127.0.0.1:{source.port}/0"
    with pytest.raises(SourceToolFailed) as caught:
        redis_source.dump(url)
    assert "WRONGPASS" in str(caught.value)
    assert "nope-secret" not in str(caught.value)


def test_dump_from_a_server_that_is_down_names_host_and_port():
    port = free_port()
    with pytest.raises(SourceToolFailed) as caught:
        redis_source.dump(f"redis://127.0.0.1:{port}/0")
    assert caught.value.facts["port"] == port and "cannot connect" in str(caught.value)


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_killed_dump_fails_on_close(source):
    producer = redis_source.dump(source.url)
    producer.read(10)
    producer.kill()
    with pytest.raises(SourceToolFailed, match="killed"):
        producer.close()


def test_restore_refuses_a_stream_that_is_not_an_rdb(target):
    before = sorted(os.listdir(target.dir))
    with pytest.raises(RestoreFailed, match="not an RDB"):
        redis_source.restore(target.url, io.BytesIO(b"PGDMP..."),
                             {"data_dir": str(target.dir), "restart": restart(target)})
    assert sorted(os.listdir(target.dir)) == before
    assert port_open(target.port)  # untouched, still running


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_restore_refuses_a_truncated_rdb_and_leaves_the_server_alone(source, target):
    with redis_source.dump(source.url) as producer:
        data = read_all(producer)
    target.client().set("still", "here")
    with pytest.raises(RestoreFailed, match="truncated"):
        redis_source.restore(target.url, io.BytesIO(data[: len(data) // 2]),
                             {"data_dir": str(target.dir), "restart": restart(target)})
    assert target.client().get("still") == b"here"
    assert not [name for name in os.listdir(target.dir) if name.endswith(".rdb")]


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_a_corrupt_chunk_leaves_the_server_serving_its_own_data_and_says_so(source, target):
    from drfleet.backup_format.errors import EnvelopeCorrupt

    with redis_source.dump(source.url) as producer:
        data = read_all(producer)

    class Breaking(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > len(data) * 3 // 4:
                raise EnvelopeCorrupt("data-0000.zst.dfe", 5, "chunk 5 failed authentication")
            return super().read(n)

    target.client().set("still", "here")
    with pytest.raises(EnvelopeCorrupt) as caught:
        redis_source.restore(target.url, Breaking(data), {"data_dir": str(target.dir), "restart": restart(target)})
    assert caught.value.facts["target_state"].startswith("untouched")
    assert "target_state: untouched" in caught.value.args[0]
    assert target.client().get("still") == b"here"
    assert not [name for name in os.listdir(target.dir) if name.endswith(".rdb")]


def test_restore_options_are_checked(target):
    with pytest.raises(InvalidSourceOptions, match="data_dir"):
        redis_source.restore(target.url, io.BytesIO(b"REDIS"), {"restart": restart(target)})
    with pytest.raises(InvalidSourceOptions, match="exactly one"):
        redis_source.restore(target.url, io.BytesIO(b"REDIS"),
                             {"data_dir": str(target.dir), "restart": restart(target),
                              "command": ["true"]})


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_restore_with_a_failing_command_reports_its_stderr(source, target):
    with redis_source.dump(source.url) as producer:
        data = read_all(producer)
    with pytest.raises(RestoreFailed) as caught:
        redis_source.restore(target.url, io.BytesIO(data),
                             {"data_dir": str(target.dir),
                              "command": ["sh", "-c", "echo 'unit redis.service not found' >&2; exit 5"]})
    assert caught.value.returncode == 5
    assert caught.value.stderr_tail == ["unit redis.service not found"]
    assert os.path.exists(os.path.join(target.dir, "dump.rdb"))  # written before the restart
    assert "not serving it: start the server" in caught.value.facts["target_state"]


@pytest.mark.parametrize("source", ["diskless"], indirect=True)
def test_restore_with_a_command_that_starts_the_server(source, tmp_path):
    with redis_source.dump(source.url) as producer:
        data = read_all(producer)
    port, pidfile = free_port(), tmp_path / "redis.pid"
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
               "--save", "", "--appendonly", "no", "--daemonize", "yes",
               "--pidfile", str(pidfile), "--logfile", str(tmp_path / "redis.log")]
    url = f"redis://127.0.0.1:{port}/0"
    try:
        redis_source.restore(url, io.BytesIO(data), {"data_dir": str(tmp_path), "command": command})
        assert redis_source.fingerprint(url) == redis_source.fingerprint(source.url)
    finally:
        if pidfile.exists():  # the daemon we started through the command
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            wait_for(lambda: not port_open(port), timeout=10, what="restored redis to stop")


def test_restore_detects_a_server_that_loads_another_file(target, tmp_path):
    other = RedisServer(extra_args=NO_DELAY).start()
    try:
        with redis_source.dump(other.url) as producer:
            data = read_all(producer)
    finally:
        other.cleanup()
    with pytest.raises(RestoreFailed, match="does not load the restored file"):
        redis_source.restore(target.url, io.BytesIO(data),
                             {"data_dir": str(tmp_path), "restart": restart(target)})


def test_tool_versions_name_the_transfer_and_redis_py():
    versions = redis_source.tool_versions()
    assert "PSYNC" in versions["rdb-transfer"] and versions["redis-py"]


def test_rediss_is_refused_clearly():
    with pytest.raises(InvalidSourceOptions, match="scheme"):
        redis_source.dump("rediss://127.0.0.1:6380/0")
