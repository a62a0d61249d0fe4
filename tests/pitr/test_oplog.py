"""MongoDB oplog capture and restore to a timestamp.

No MongoDB server can run here: the oplog is a list of hand-written entries in the shape a
replica set writes them (insert, $set update, $v:2 diff update, delete, create, a
transaction's applyOps, no-op), held in mongomock's ``local.oplog.rs``; the dump and the
restore go through the mongodb data source's pymongo path against mongomock."""

from __future__ import annotations

import copy

import mongomock
import pytest
from bson.timestamp import Timestamp

from drfleet.pitr.errors import OplogError, OplogGap
from drfleet.pitr.oplog import apply_entry, capture_slice, diff_to_update, read_oplog, restore_to_timestamp, slices
from drfleet.providers.datasources import mongodb

T0 = 1_767_000_000

RECORDED_OPLOG = [
    {"ts": Timestamp(T0 + 10, 1), "op": "c", "ns": "shop.$cmd", "o": {"create": "orders"}},
    {"ts": Timestamp(T0 + 10, 2), "op": "i", "ns": "shop.orders", "o": {"_id": 1, "item": "tea", "qty": 2}},
    {"ts": Timestamp(T0 + 11, 1), "op": "i", "ns": "shop.orders", "o": {"_id": 2, "item": "cups", "qty": 6}},
    {"ts": Timestamp(T0 + 12, 1), "op": "u", "ns": "shop.orders", "o2": {"_id": 1},
     "o": {"$v": 2, "diff": {"u": {"qty": 3}, "i": {"gift": True}}}},
    {"ts": Timestamp(T0 + 13, 1), "op": "n", "ns": "", "o": {"msg": "periodic noop"}},
    # ---- T0 + 13: the restore target of the tests
    {"ts": Timestamp(T0 + 14, 1), "op": "d", "ns": "shop.orders", "o": {"_id": 2}},
    {"ts": Timestamp(T0 + 15, 1), "op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "shop.orders", "o": {"_id": 3, "item": "pot", "qty": 1}},
        {"op": "u", "ns": "shop.orders", "o2": {"_id": 1}, "o": {"$set": {"qty": 10}, "$unset": {"gift": ""}}},
    ]}},
    {"ts": Timestamp(T0 + 16, 1), "op": "u", "ns": "shop.orders", "o2": {"_id": 3},
     "o": {"_id": 3, "item": "teapot", "qty": 1}},
]

PLAN = """\
version: 1
name: oplog-test
regions: [{{name: eu-central, primary: true}}]
storage: {{home: {{kind: filesystem, region: eu-central, path: {store}}}}}
keys: {{database: {{file: {keyring}}}}}
objectives: {{rpo: {{database: 6 hours}}, rto: {{database: 1 hour}}}}
datasets:
  mongodb:
    kind: mongodb
    region: eu-central
    connection: {{env: OPLOG_TEST_MONGODB_URI}}
    key: database
    data_class: database
    policies:
      - {{name: weekly-full, trigger: weekly, keep: 4 weeks, copies: [home-region]}}
      - {{name: oplog, trigger: every 6 hours, mode: oplog, keep: 7 days, copies: [home-region]}}
"""


def _list_collections(self, *args, **kwargs):
    return iter([{"name": name, "type": "collection", "options": {}} for name in self.list_collection_names()])


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A plan with a mongodb dataset, and one mongomock server per host name."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.plan.loader import load_plan

    (tmp_path / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "keys" / "database.keyring", "database")
    (tmp_path / "plan.yaml").write_text(PLAN.format(store=tmp_path / "store",
                                                    keyring=tmp_path / "keys" / "database.keyring"))
    servers: dict[str, mongomock.MongoClient] = {}

    def factory(uri: str):
        host = uri.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2].split(":")[0]
        return servers.setdefault(host, mongomock.MongoClient())

    def last_write(client):  # what `hello` reports on a replica set: the newest oplog entry
        entries = list(client["local"]["oplog.rs"].find({}))
        ts = entries[-1]["ts"] if entries else Timestamp(0, 0)
        return {"last_write": {"ts": [ts.time, ts.inc], "term": 1}}

    monkeypatch.setattr(mongodb, "_client_factory", factory)
    monkeypatch.setattr(mongodb, "read_position", last_write)
    monkeypatch.setattr(mongomock.database.Database, "list_collections", _list_collections, raising=False)
    monkeypatch.setenv("OPLOG_TEST_MONGODB_URI", "mongodb://source:27017/shop")
    return load_plan(tmp_path / "plan.yaml"), factory


def _write_oplog(client, entries):
    client["local"]["oplog.rs"].insert_many(copy.deepcopy(entries))


def test_slices_chain_in_timestamp_order_and_an_empty_slice_is_not_stored(world):
    plan, factory = world
    source = factory("mongodb://source:27017/shop")
    _write_oplog(source, RECORDED_OPLOG[:4])
    first = capture_slice(plan, "mongodb", source, server_side=False)
    _write_oplog(source, RECORDED_OPLOG[4:])
    second = capture_slice(plan, "mongodb", source, server_side=False)
    assert capture_slice(plan, "mongodb", source, server_side=False) is None
    assert (first["after_ts"], first["first_ts"], first["last_ts"]) == (None, [T0 + 10, 1], [T0 + 12, 1])
    assert second["after_ts"] == first["last_ts"] and second["first_ts"] == [T0 + 13, 1]
    assert second["entries"] == len(RECORDED_OPLOG) - 4
    stored = slices(plan, "mongodb")
    assert [r.backup_id for r in stored] == [first["backup_id"], second["backup_id"]]
    assert stored[1].manifest.parents == [first["backup_id"]]


def test_an_oplog_that_rolled_over_between_slices_is_a_gap(world):
    plan, factory = world
    source = factory("mongodb://source:27017/shop")
    _write_oplog(source, RECORDED_OPLOG[:3])
    capture_slice(plan, "mongodb", source, server_side=False)
    source["local"]["oplog.rs"].delete_many({})  # the capped oplog wrapped around
    _write_oplog(source, RECORDED_OPLOG[5:])
    with pytest.raises(OplogGap) as caught:
        capture_slice(plan, "mongodb", source, server_side=False)
    assert str(T0 + 11) in str(caught.value)
    assert len(slices(plan, "mongodb")) == 1


def test_timestamps_that_go_backwards_are_refused():
    client = mongomock.MongoClient()
    entries = copy.deepcopy(RECORDED_OPLOG[:3])
    client["local"]["oplog.rs"].insert_many(entries)
    with pytest.raises(OplogError):
        list(read_oplog(_Unsorted(client), None, server_side=False))


class _Unsorted:
    """A client whose oplog cursor yields entries out of order (a broken source)."""

    def __init__(self, client):
        self.client = client

    def __getitem__(self, name):
        database = self.client[name]
        return {"oplog.rs": _Reversed(database["oplog.rs"])}


class _Reversed:
    def __init__(self, collection):
        self.collection = collection

    def find(self, *args, **kwargs):
        return list(self.collection.find())[::-1]


def test_restore_to_a_timestamp_is_the_dump_then_the_oplog_up_to_it(world):
    from drfleet.datapath.backup import run_backup
    plan, factory = world
    source = factory("mongodb://source:27017/shop")
    # the state at the dump: what the first entries made
    for entry in RECORDED_OPLOG[:3]:
        apply_entry(source, entry)
    _write_oplog(source, RECORDED_OPLOG[:3])
    dump = run_backup(plan, "mongodb", "weekly-full", region="eu-central")
    _write_oplog(source, RECORDED_OPLOG[3:])
    capture_slice(plan, "mongodb", source, server_side=False)  # chains on from the dump's last write

    result = restore_to_timestamp(plan, "mongodb", "mongodb://target:27017/shop", f"{T0 + 13}:1")
    target = factory("mongodb://target:27017/shop")
    orders = {d["_id"]: d for d in target["shop"]["orders"].find()}
    assert result["dump"] == dump["backup_id"]
    assert orders == {1: {"_id": 1, "item": "tea", "qty": 3, "gift": True},
                      2: {"_id": 2, "item": "cups", "qty": 6}}

    restore_to_timestamp(plan, "mongodb", "mongodb://later:27017/shop", "latest")
    later = {d["_id"]: d for d in factory("mongodb://later:27017/shop")["shop"]["orders"].find()}
    assert later == {1: {"_id": 1, "item": "tea", "qty": 10}, 3: {"_id": 3, "item": "teapot", "qty": 1}}


def test_a_target_beyond_the_last_slice_is_refused(world):
    from drfleet.datapath.backup import run_backup
    plan, factory = world
    source = factory("mongodb://source:27017/shop")
    _write_oplog(source, RECORDED_OPLOG[:2])
    run_backup(plan, "mongodb", "weekly-full", region="eu-central")
    _write_oplog(source, RECORDED_OPLOG[2:])
    capture_slice(plan, "mongodb", source, max_entries=3, server_side=False)
    with pytest.raises(OplogGap):
        restore_to_timestamp(plan, "mongodb", "mongodb://target:27017/shop", f"{T0 + 100}:1")


def test_update_diffs_become_set_and_unset():
    assert diff_to_update({"u": {"a": 1}, "d": {"b": False}, "sc": {"u": {"x": 2}}}) == \
        {"$set": {"a": 1, "c.x": 2}, "$unset": {"b": ""}}
