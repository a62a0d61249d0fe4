"""mongodb data source.

No MongoDB server or Database Tools can run here, so: the pymongo path runs against
mongomock (the module's ``_client_factory`` hook is pointed at one in-memory client per
host), and the tool path is checked through its argv builders and through small
executables standing in for mongodump/mongorestore, which record what they were given.
"""

from __future__ import annotations

import io
import json
import os
import stat
import textwrap
from pathlib import Path

import bson
import mongomock
import pytest
import yaml
from bson import json_util

from drfleet.providers.datasources import mongodb
from drfleet.providers.datasources.errors import InvalidSourceOptions, RestoreFailed, SourceToolFailed, ToolNotInstalled
from drfleet.providers.datasources.support import mongodb_logical

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "recorded" / "mongodb_shop.json"
SECRET = "m0ng0:p@ss"
SOURCE_URL = "mongodb://backup:m0ng0%3Ap%40ss@source:27017/shop?authSource=admin"


def read_all(producer) -> bytes:
    chunks = []
    while chunk := producer.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _list_collections(self, *args, **kwargs):
    """What a server's listCollections says about plain collections (mongomock lacks it)."""
    return iter([{"name": name, "type": "collection", "options": {}}
                 for name in self.list_collection_names()])


@pytest.fixture
def servers(monkeypatch):
    """One mongomock client per host name of the URL, handed out by ``_client_factory``."""
    clients: dict[str, mongomock.MongoClient] = {}

    def factory(uri: str):
        netloc = uri.split("://", 1)[1].split("/", 1)[0]
        host = netloc.rpartition("@")[2].split(":")[0]
        return clients.setdefault(host, mongomock.MongoClient())

    monkeypatch.setattr(mongodb, "_client_factory", factory)
    monkeypatch.setattr(mongomock.database.Database, "list_collections", _list_collections,
                        raising=False)
    return clients


@pytest.fixture
def shop(servers):
    recorded = json_util.loads(RECORDED.read_text())
    db = mongodb._client_factory(SOURCE_URL)["shop"]
    for name, documents in recorded.items():
        if not name.startswith("_"):
            db[name].insert_many(documents)
    db.customers.create_index([("email", 1)], unique=True, name="email_unique")
    db.orders.create_index([("customer", 1), ("placed", -1)], name="by_customer")
    db.events.insert_many([{"_id": i, "kind": "click", "n": i * 3} for i in range(2500)])
    return db


def test_pymongo_round_trip_into_another_database_gives_equal_fingerprints(shop):
    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        data = read_all(producer)
    assert data.startswith(mongodb_logical.MAGIC)
    assert producer.position == {"last_write": None}  # no replica set behind mongomock

    target = "mongodb://restorer:pw@target:27017/shop_restored"
    mongodb.restore(target, io.BytesIO(data))

    original = mongodb.fingerprint(SOURCE_URL)
    restored = mongodb.fingerprint(target)
    assert original == restored
    assert set(original["collections"]) == {"customers", "events", "orders", "settings"}
    assert original["collections"]["events"]["documents"] == 2500
    index_names = [spec[0] for spec in original["collections"]["customers"]["indexes"]]
    assert index_names == ["_id_", "email_unique"]
    assert ["by_customer", [["customer", 1], ["placed", -1]], {}] in \
        original["collections"]["orders"]["indexes"]


def test_restored_documents_are_byte_identical(shop, servers):
    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        data = read_all(producer)
    mongodb.restore("mongodb://target/copy", io.BytesIO(data))
    copy = servers["target"]["copy"]
    for name in ("customers", "orders", "settings"):
        originals = [bson.encode(d) for d in shop[name].find(sort=[("_id", 1)])]
        assert [bson.encode(d) for d in copy[name].find(sort=[("_id", 1)])] == originals


def test_fingerprint_changes_when_one_document_changes(shop):
    before = mongodb.fingerprint(SOURCE_URL)
    shop.orders.update_one({"status": "pending"}, {"$set": {"status": "paid"}})
    after = mongodb.fingerprint(SOURCE_URL)
    assert before["collections"]["orders"]["documents"] == after["collections"]["orders"]["documents"]
    assert before["collections"]["orders"]["checksum"] != after["collections"]["orders"]["checksum"]
    assert before["collections"]["events"] == after["collections"]["events"]


def test_whole_server_dump_restores_every_database(shop, servers):
    mongodb._client_factory("mongodb://source/")["crm"].leads.insert_one({"_id": 1, "who": "x"})
    with mongodb.dump("mongodb://source/", {"method": "pymongo"}) as producer:
        data = read_all(producer)
    mongodb.restore("mongodb://target/", io.BytesIO(data))
    assert mongodb.fingerprint("mongodb://source/") == mongodb.fingerprint("mongodb://target/")
    assert "crm.leads" in mongodb.fingerprint("mongodb://target/")["collections"]
    with pytest.raises(RestoreFailed, match="several databases"):
        mongodb.restore("mongodb://other/one", io.BytesIO(data))


def test_drop_replaces_existing_collections(shop, servers):
    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        data = read_all(producer)
    servers.setdefault("target", mongomock.MongoClient())["shop"].orders.insert_one({"_id": "stale"})
    mongodb.restore("mongodb://target/shop", io.BytesIO(data))
    assert mongodb.fingerprint("mongodb://target/shop") == mongodb.fingerprint(SOURCE_URL)


def test_truncated_or_inconsistent_streams_are_refused(shop, servers):
    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        data = read_all(producer)
    servers.setdefault("target", mongomock.MongoClient())["t1"].orders.insert_one({"_id": "kept"})
    with pytest.raises(RestoreFailed, match="truncated") as caught:
        mongodb.restore("mongodb://target/t1", io.BytesIO(data[:-5]))
    assert caught.value.facts["target_state"].startswith("untouched")
    assert list(servers["target"]["t1"].orders.find()) == [{"_id": "kept"}]  # not dropped
    end = data.rindex(mongodb_logical.END + bson.encode({"collections": 4, "documents": 2508}))
    lying = data[:end] + mongodb_logical.END + bson.encode({"collections": 4, "documents": 9})
    with pytest.raises(RestoreFailed, match="announced"):
        mongodb.restore("mongodb://target/t2", io.BytesIO(lying))
    with pytest.raises(RestoreFailed, match="not a drfleet MongoDB dump"):
        mongodb.restore("mongodb://target/t3", io.BytesIO(b"PGDMP" + b"\0" * 40))


@pytest.mark.parametrize("at", [0.5, 0.99])
def test_a_corrupt_chunk_leaves_the_target_untouched_and_says_so(shop, servers, at):
    from drfleet.backup_format.errors import EnvelopeCorrupt

    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        data = read_all(producer)

    class Breaking(io.BytesIO):
        def read(self, n=-1):
            if self.tell() >= len(data) * at:
                raise EnvelopeCorrupt("data-0000.zst.dfe", 3, "chunk 3 failed authentication")
            return super().read(min(n, 1024) if n and n > 0 else 1024)

    servers.setdefault("target", mongomock.MongoClient())["shop"].orders.insert_one({"_id": "kept"})
    with pytest.raises(EnvelopeCorrupt) as caught:
        mongodb.restore("mongodb://target/shop", Breaking(data))
    assert caught.value.facts["target_state"].startswith("untouched")
    assert list(servers["target"]["shop"].orders.find()) == [{"_id": "kept"}]


# --- tool path ------------------------------------------------------------------------

def test_argv_builders_keep_the_uri_out_of_argv():
    assert mongodb.mongodump_argv("/run/x/mongo-tools.yaml") == \
        ["mongodump", "--archive", "--config=/run/x/mongo-tools.yaml"]
    assert mongodb.mongodump_argv("/c.yaml", {"oplog": True})[-1] == "--oplog"
    assert mongodb.mongorestore_argv("/c.yaml") == \
        ["mongorestore", "--archive", "--config=/c.yaml", "--drop"]
    assert mongodb.mongorestore_argv("/c.yaml", {"drop": False, "oplog": True}) == \
        ["mongorestore", "--archive", "--config=/c.yaml", "--oplogReplay"]


def test_tool_config_is_private_yaml_with_the_uri():
    config = mongodb.tool_config(SOURCE_URL)
    try:
        assert stat.S_IMODE(os.stat(config.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(config.path)).st_mode) == 0o700
        assert yaml.safe_load(Path(config.path).read_text()) == {"uri": SOURCE_URL}
    finally:
        config.remove()
    assert not os.path.exists(config.path)


def install_fake_tool(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(0o755)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """mongodump/mongorestore stand-ins that record argv, config file and stdin."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    common = f"""
        echo "$@" > {record}/argv
        for arg in "$@"; do case "$arg" in --config=*) cfg="${{arg#--config=}}";; esac; done
        stat -c %a "$cfg" > {record}/config_mode
        cp "$cfg" {record}/config
        if [ -n "$FAIL" ]; then echo "Failed: error connecting to db server: $FAIL" >&2; exit 2; fi
    """
    install_fake_tool(bin_dir, "mongodump", common + r"""
        printf '\155\342\231\201fake archive bytes'
    """)
    install_fake_tool(bin_dir, "mongorestore", common + f"""
        cat > {record}/stdin
    """)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return record


def assert_no_secret_in_argv(record: Path) -> None:
    argv = (record / "argv").read_text()
    assert SECRET not in argv and "m0ng0" not in argv and "source:27017" not in argv
    assert (record / "config_mode").read_text().strip() == "600"
    assert yaml.safe_load((record / "config").read_text()) == {"uri": SOURCE_URL}


def test_tool_path_dump_streams_mongodump_archive(servers, fake_tools):
    producer = mongodb.dump(SOURCE_URL)
    assert producer.argv[0].endswith("/mongodump")
    with producer:
        data = read_all(producer)
    assert data == mongodb.ARCHIVE_MAGIC + b"fake archive bytes"
    assert_no_secret_in_argv(fake_tools)


def test_tool_path_dump_failure_carries_mongodump_stderr(servers, fake_tools, monkeypatch):
    monkeypatch.setenv("FAIL", "connection refused")
    producer = mongodb.dump(SOURCE_URL)
    read_all(producer)
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert caught.value.tool == "mongodump" and caught.value.returncode == 2
    assert caught.value.stderr_tail == ["Failed: error connecting to db server: connection refused"]
    assert "m0ng0" not in str(caught.value)


def test_archives_are_restored_with_mongorestore_from_stdin(servers, fake_tools):
    archive = mongodb.ARCHIVE_MAGIC + b"archive payload" * 1000
    mongodb.restore(SOURCE_URL, io.BytesIO(archive))
    assert (fake_tools / "stdin").read_bytes() == archive
    argv = (fake_tools / "argv").read_text().split()
    assert argv[0] == "--archive" and argv[1].startswith("--config=") and "--drop" in argv
    assert_no_secret_in_argv(fake_tools)


def test_mongorestore_failure_raises_restore_failed(servers, fake_tools, monkeypatch):
    monkeypatch.setenv("FAIL", "auth failed")
    with pytest.raises(RestoreFailed) as caught:
        mongodb.restore(SOURCE_URL, io.BytesIO(mongodb.ARCHIVE_MAGIC + b"x"))
    assert caught.value.tool == "mongorestore" and caught.value.returncode == 2
    assert "auth failed" in caught.value.stderr_tail[-1]


def test_method_pymongo_wins_over_installed_tools(shop, fake_tools):
    with mongodb.dump(SOURCE_URL, {"method": "pymongo"}) as producer:
        assert read_all(producer).startswith(mongodb_logical.MAGIC)
    assert not (fake_tools / "argv").exists()


def test_method_tools_without_mongodump_names_the_tool(servers, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolNotInstalled, match="mongodump"):
        mongodb.dump(SOURCE_URL, {"method": "tools"})


def test_bad_options_and_urls_are_refused(servers):
    with pytest.raises(InvalidSourceOptions, match="method"):
        mongodb.dump(SOURCE_URL, {"method": "carrier pigeon"})
    with pytest.raises(InvalidSourceOptions, match="mongodb://"):
        mongodb.fingerprint("postgresql://x@y/z")


def test_tool_versions_report_pymongo_and_the_tools():
    versions = mongodb.tool_versions()
    assert versions["pymongo"] and set(versions) >= {"mongodump", "mongorestore"}
    assert json.dumps(versions)
