"""Drills of every backup kind: an incremental chain restored to its day N and compared with
the tree of that day, a Redis backup restored into a private redis-server, and a MongoDB
dump plus oplog slices restored to a timestamp (mongomock, as no MongoDB server can run
here) and compared with the fingerprint taken at that timestamp. Each records RTO and RPO
and is judged against the plan's targets by the report."""

from __future__ import annotations

import copy
import random
import textwrap
import time

import mongomock
import pytest
from bson.timestamp import Timestamp

from drfleet.backup_format.keyring import create_keyring
from drfleet.datapath.backup import run_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.datasources import mongodb
from drfleet.providers.datasources.support import files_index
from drfleet.report.build import build_report
from drfleet.runbooks.drills import run_drill
from drfleet.runbooks.pitr_drills import pitr_drill
from tests.fixtures.fleet import write_plan
from tests.fixtures.redis_server import RedisServer


@pytest.fixture
def state(redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    return redis_url


def keys(root):
    (root / "keys").mkdir(mode=0o700, exist_ok=True)
    for name in ("content", "offsite", "database"):
        create_keyring(root / "keys" / f"{name}.keyring", name)


def test_an_incremental_chain_is_drilled_to_day_n_with_that_days_tree(tmp_path, state, monkeypatch):
    monkeypatch.setattr(files_index, "RACY_WINDOW_NS", 50_000_000)
    src = tmp_path / "uploads"
    src.mkdir()
    datasets = textwrap.dedent(f"""\
        uploads:
          kind: files
          region: eu-central
          source: {{path: {src}}}
          key: content
          rpo: 24h
          rto: 30m
          policies:
            - {{name: weekly-full, trigger: "weekly on sunday at 03:00", keep: 4 weeks, copies: [home-region]}}
            - {{name: daily-incremental, trigger: "daily at 02:00", mode: incremental, keep: 30 days, copies: [home-region]}}
        """)
    plan = load_plan(write_plan(tmp_path / "plan", datasets=datasets))
    keys(tmp_path / "plan")
    days = []
    (src / "day0.txt").write_text("full\n")
    days.append(run_backup(plan, "uploads", "weekly-full", region="eu-central")["backup_id"])
    for day in (1, 2, 3):
        time.sleep(0.15)
        (src / f"day{day}.txt").write_text(f"day {day}\n")
        if day == 2:
            (src / "day0.txt").unlink()               # removed on day 2: gone from day 2 on
        days.append(run_backup(plan, "uploads", "daily-incremental", region="eu-central")["backup_id"])
    n = random.Random().randrange(1, 4)
    record = run_drill(plan, "restore", region="eu-central", dataset="uploads", backup_id=days[n])
    assert record.result == "passed", record.reason
    restore_step = next(s for s in record.steps if s.name.startswith("uploads: restore"))
    assert restore_step.name == f"uploads: restore (chain of {n + 1})"
    assert record.rto_seconds is not None and record.rpo_seconds is not None
    # a day the chain cannot reach is a failed drill, not a pass
    missing = run_drill(plan, "restore", region="eu-central", dataset="uploads", backup_id="20990101T000000Z-ffffffff")
    assert missing.result == "failed" and "not restorable here" in missing.reason


def test_a_redis_backup_is_drilled_in_a_private_redis_server(tmp_path, state, monkeypatch):
    source = RedisServer().start()
    try:
        source.client().mset({f"k{i}": f"v{i}" for i in range(50)})
        monkeypatch.setenv("DRILL_REDIS_URL", source.url)
        datasets = textwrap.dedent("""\
            cache:
              kind: redis
              region: eu-central
              connection: {env: DRILL_REDIS_URL}
              key: content
              rpo: 24h
              rto: 5m
              policies:
                - {name: daily, trigger: "daily at 02:00", keep: 30 days, copies: [home-region]}
            """)
        plan = load_plan(write_plan(tmp_path / "plan", datasets=datasets))
        keys(tmp_path / "plan")
        run_backup(plan, "cache", "daily", region="eu-central")
        record = run_drill(plan, "restore", region="eu-central", dataset="cache")
        assert record.result == "passed", record.reason
        assert [s.name for s in record.steps][-3:] == ["cache: restore", "cache: compare fingerprint",
                                                        "cache: remove scratch target"]
    finally:
        source.cleanup()


T0 = 1_767_000_000
OPLOG = [
    {"ts": Timestamp(T0 + 10, 1), "op": "i", "ns": "shop.orders", "o": {"_id": 1, "item": "tea", "qty": 2}},
    {"ts": Timestamp(T0 + 11, 1), "op": "i", "ns": "shop.orders", "o": {"_id": 2, "item": "cups", "qty": 6}},
    {"ts": Timestamp(T0 + 12, 1), "op": "u", "ns": "shop.orders", "o2": {"_id": 1}, "o": {"$set": {"qty": 3}}},
    {"ts": Timestamp(T0 + 13, 1), "op": "d", "ns": "shop.orders", "o": {"_id": 2}},
    {"ts": Timestamp(T0 + 14, 1), "op": "i", "ns": "shop.orders", "o": {"_id": 3, "item": "pot", "qty": 1}},
]


def mongomock_world(monkeypatch):
    """The mongodb data source pointed at one mongomock server per host name; returns the
    client factory."""
    servers: dict[str, mongomock.MongoClient] = {}

    def factory(uri: str):
        host = uri.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2].split(":")[0]
        return servers.setdefault(host, mongomock.MongoClient())

    def last_write(client):
        entries = list(client["local"]["oplog.rs"].find({}))
        ts = entries[-1]["ts"] if entries else Timestamp(0, 0)
        return {"last_write": {"ts": [ts.time, ts.inc], "term": 1}}

    monkeypatch.setattr(mongodb, "_client_factory", factory)
    monkeypatch.setattr(mongodb, "read_position", last_write)
    monkeypatch.setattr(mongomock.database.Database, "list_collections",
                        lambda self, *a, **k: iter([{"name": n, "type": "collection", "options": {}}
                                                    for n in self.list_collection_names()]), raising=False)
    return factory


def test_a_mongodb_dump_plus_oplog_is_drilled_to_a_timestamp_against_its_fingerprint(tmp_path, state, monkeypatch):
    from drfleet.pitr.oplog import apply_entry, capture_slice

    factory = mongomock_world(monkeypatch)
    monkeypatch.setenv("DRILL_MONGODB_URI", "mongodb://source:27017/shop")
    datasets = textwrap.dedent("""\
        mongodb:
          kind: mongodb
          region: eu-central
          connection: {env: DRILL_MONGODB_URI}
          key: database
          rpo: 6 hours
          rto: 15m
          policies:
            - {name: weekly-full, trigger: "weekly on sunday at 03:00", keep: 4 weeks, copies: [home-region]}
            - {name: oplog, trigger: every 6 hours, mode: oplog, keep: 7 days, copies: [home-region]}
        """)
    plan = load_plan(write_plan(tmp_path / "plan", datasets=datasets, keys="database: {file: "
                                f"{tmp_path}/plan/keys/database.keyring}}\n"))
    keys(tmp_path / "plan")
    source = factory("mongodb://source:27017/shop")
    for entry in OPLOG[:2]:                               # the state at the dump
        apply_entry(source, entry)
    source["local"]["oplog.rs"].insert_many(copy.deepcopy(OPLOG[:2]))
    run_backup(plan, "mongodb", "weekly-full", region="eu-central")
    fingerprints = {}
    for entry in OPLOG[2:]:                               # after the dump: captured in slices
        apply_entry(source, entry)
        source["local"]["oplog.rs"].insert_one(copy.deepcopy(entry))
        capture_slice(plan, "mongodb", source, server_side=False)
        fingerprints[f"{entry['ts'].time}:{entry['ts'].inc}"] = mongodb.fingerprint("mongodb://source:27017/shop")
    at = random.Random().choice(sorted(fingerprints))
    record = pitr_drill(plan, "mongodb", at=at, expected=fingerprints[at], target="mongodb://staging:27017/shop",
                        client_factory=factory)
    assert record.result == "passed", record.reason
    assert record.scenario == "oplog" and record.rpo_seconds is not None
    other = next(t for t in sorted(fingerprints) if t != at)
    wrong = pitr_drill(plan, "mongodb", at=at, expected=fingerprints[other], target="mongodb://staging2:27017/shop",
                       client_factory=factory)
    assert wrong.result == "failed" and "differs_in=orders" in wrong.reason
    report = build_report(plan)
    row = next(r for r in report["rpo"] if r["dataset"] == "mongodb")
    assert row["source"] == "oplog" and row["newest_recovery_point"] == float(T0 + 14)
