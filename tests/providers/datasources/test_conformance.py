"""The behaviour every data source kind promises (providers/datasources/__init__.py), run
against each kind the same way: a source with data is dumped, the dump restored into an
empty target, and the fingerprints of source and copy are equal; a change to the source
changes its fingerprint; ``tool_versions`` names tools; a source that is not there is a
DataSourceError naming no password. Adding a kind is one module and one ``Kind`` here.

PostgreSQL, Redis and the files kind run for real (a cluster, a redis-server, a
directory); MongoDB runs on mongomock (no server can be installed here).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import mongomock
import pytest

from drfleet.providers.datasources import known_kinds, open_source
from drfleet.providers.datasources.errors import DataSourceError
from tests.fixtures.redis_server import RedisServer


@dataclass
class Kind:
    """One kind's world: a source with data, an empty target, a change, an absent source."""

    source: str
    target: str
    change: Callable[[], None]
    absent: str
    options: dict[str, Any] | None = None
    restore_options: dict[str, Any] | None = None  # what restoring needs besides (e.g. a restart)


def _postgres(request, tmp_path) -> Kind:
    cluster = request.getfixturevalue("pg_cluster")
    src, dst = (cluster.create_database(f"conf_{uuid.uuid4().hex[:8]}") for _ in range(2))
    cluster.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) "
                 "FROM generate_series(1, 500) g", db=src.rsplit("/", 1)[-1])
    return Kind(src, dst, lambda: cluster.psql("UPDATE t SET v = 'changed' WHERE id = 7", db=src.rsplit("/", 1)[-1]),
                absent=cluster.dsn().rsplit("/", 1)[0].replace(f":{cluster.port}", ":1") + "/none")


def _redis(request, tmp_path) -> Kind:
    server, target = RedisServer(password="conformance-pw-123").start(), RedisServer().start()
    request.addfinalizer(server.cleanup)
    request.addfinalizer(target.cleanup)
    client = server.client(0)
    client.mset({f"k{i}": f"v{i}" for i in range(200)})
    client.hset("h", mapping={"a": "1", "b": "2"})
    # a Redis restore replaces the target server's data file and restarts it
    return Kind(server.url, target.url, lambda: client.set("k7", "changed"),
                absent="redis://:conformance-pw-123@127.0.0.1:1/0",
                restore_options={"data_dir": str(target.dir), "restart": lambda: (target.stop(), target.start())})


def _files(request, tmp_path) -> Kind:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    for i in range(20):
        (src / "sub" / f"f{i}.txt").write_text(f"content {i}\n" * (i + 1))
    (src / "link").symlink_to("sub/f1.txt")
    return Kind(str(src), str(dst), lambda: (src / "sub" / "f7.txt").write_text("changed\n"),
                absent=str(tmp_path / "not-there"))


def _mongodb(request, tmp_path) -> Kind:
    from drfleet.providers.datasources import mongodb
    monkeypatch = request.getfixturevalue("monkeypatch")
    clients: dict[str, mongomock.MongoClient] = {}

    def factory(uri: str):
        host = uri.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2].split(":")[0]
        if host == "absent":  # a real client to a port nothing listens on
            import pymongo
            return pymongo.MongoClient("mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=300)
        return clients.setdefault(host, mongomock.MongoClient())

    monkeypatch.setattr(mongodb, "_client_factory", factory)
    monkeypatch.setattr(mongomock.database.Database, "list_collections", lambda self, *a, **k: iter(
        [{"name": n, "type": "collection", "options": {}} for n in self.list_collection_names()]), raising=False)
    db = factory("mongodb://src/shop")["shop"]
    db.orders.insert_many([{"_id": i, "total": i * 3} for i in range(300)])
    return Kind("mongodb://u:conformance-pw-123@src/shop", "mongodb://u:conformance-pw-123@dst/shop",
                lambda: db.orders.update_one({"_id": 7}, {"$set": {"total": -1}}),
                absent="mongodb://u:conformance-pw-123@absent/shop")


WORLDS = {"postgres": _postgres, "redis": _redis, "files": _files, "mongodb": _mongodb}


def test_every_registered_kind_is_in_the_conformance_suite():
    assert sorted(WORLDS) == known_kinds()


@pytest.fixture(params=sorted(WORLDS))
def kind(request, tmp_path):
    return request.param, open_source(request.param), WORLDS[request.param](request, tmp_path)


def _dump_bytes(module, conn: str, options) -> bytes:
    producer = module.dump(conn, options)
    chunks = []
    while chunk := producer.read(1 << 16):
        chunks.append(chunk)
    producer.close()
    return b"".join(chunks)


def test_a_restored_dump_has_the_sources_fingerprint(kind, tmp_path):
    name, module, world = kind
    data = _dump_bytes(module, world.source, world.options)
    spool = tmp_path / "dump"
    spool.write_bytes(data)

    with open(spool, "rb") as stream:
        module.restore(world.target, stream, {**(world.options or {}), **(world.restore_options or {})})

    assert data, f"{name}: the dump produced nothing"
    assert module.fingerprint(world.target, world.options) == module.fingerprint(world.source, world.options)


def test_a_change_to_the_source_changes_its_fingerprint(kind):
    _name, module, world = kind
    before = module.fingerprint(world.source, world.options)
    world.change()
    assert module.fingerprint(world.source, world.options) != before


def test_tool_versions_names_the_tools_as_text(kind):
    _name, module, _world = kind
    versions = module.tool_versions()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())


def test_a_source_that_is_not_there_is_a_clear_error_without_the_password(kind):
    name, module, world = kind
    with pytest.raises(DataSourceError) as raised:
        _dump_bytes(module, world.absent, world.options)
    assert "conformance-pw-123" not in str(raised.value), name
