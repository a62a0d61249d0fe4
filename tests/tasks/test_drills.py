"""Drills and verification on real worker processes: a restore drill of a PostgreSQL
database into a scratch database on the real cluster, one drill per beat slot, the size
anomaly flagged by the verify task, and cold-storage verification."""

import shutil

import pytest

from drfleet.backup_format.layout import backup_time
from drfleet.plan.loader import load_plan
from drfleet.state import audit, drills, outcomes, verifications
from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy


def datasets(*, src) -> str:
    return (dataset("orders-db", policy("hourly", "hourly", "24 hours"), kind="postgres",
                    connection="ORDERS_DB_URL")
            + dataset("site", policy("hourly", "hourly", "24 hours", copies=["home-region", "offsite-cold"]),
                    source=src, rto="5m", size_anomaly_ratio=0.5))


@pytest.fixture
def drill_fleet(tmp_path, redis_url, pg_cluster, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring

    pg_cluster.create_database("orders")
    pg_cluster.psql("CREATE TABLE o (id int primary key, v text); "
                    "INSERT INTO o SELECT g, md5(g::text) FROM generate_series(1, 2000) g", "orders")
    src = tmp_path / "site"
    src.mkdir()
    (src / "big.bin").write_bytes(bytes(range(256)) * 2000)
    plan_path = write_plan(tmp_path / "plan", datasets=datasets(src=src))
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    create_keyring(tmp_path / "plan" / "keys" / "offsite.keyring", "offsite")
    env = {"ORDERS_DB_URL": pg_cluster.dsn("orders")}
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url, **env}.items():
        monkeypatch.setenv(name, value)
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = redis_url
    fleet = Fleet(tmp_path, redis_url, plan_path, env_extra=env)
    fleet.worker("eu-central", lane="data")
    yield fleet, load_plan(plan_path), src
    fleet.stop()


def backup(dataset, slot):
    from drfleet.datapath.backup import run_backup
    from drfleet.workers.plan_context import current_plan

    return run_backup(current_plan(), dataset, "hourly", region="eu-central", slot=slot)


def test_a_restore_drill_on_a_worker_restores_postgres_into_a_scratch_database(drill_fleet, pg_cluster):
    from drfleet.tasks.drills import drill

    fleet, plan, _ = drill_fleet
    taken = backup("orders-db", "s1")
    result = drill.apply_async(kwargs={"kind": "restore", "region": "eu-central", "dataset": "orders-db",
                                       "slot": "manual:1"}, headers={"drfleet_actor": "test"}).get(timeout=180)
    assert result["result"] == "passed", result["reason"]
    assert result["datasets"][0]["backup_id"] == taken["backup_id"]
    assert result["rto_seconds"] > 0 and result["rpo_seconds"] >= 0
    assert [s["name"] for s in result["steps"]][-3:] == [
        "orders-db: restore", "orders-db: compare fingerprint", "orders-db: remove scratch target"]
    assert pg_cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE 'drfleet_scratch_%'") == []
    stored = drills.get(result["drill_id"])
    assert stored.result == "passed" and stored.actor == "test" and stored.task_id
    assert [e["outcome"] for e in audit.entries(action="drill")] == ["passed"]
    assert [e["outcome"] for e in audit.entries(action="drfleet.drill")] == ["started", "succeeded"]


def test_one_drill_per_beat_slot_however_often_the_message_arrives(drill_fleet):
    from drfleet.tasks.drills import drill

    backup("site", "s1")
    kwargs = {"kind": "restore", "region": "eu-central", "dataset": "site", "slot": "2026-11-01T03:00:00+00:00"}
    first = drill.apply_async(kwargs=kwargs).get(timeout=120)
    second = drill.apply_async(kwargs=kwargs).get(timeout=120)
    assert first["result"] == "passed"
    assert second["status"] in ("duplicate", "already-succeeded")
    assert len(drills.history()) == 1


def test_the_verify_task_flags_a_backup_far_smaller_than_the_recent_ones(drill_fleet):
    from drfleet.tasks.restore import verify

    _, _, src = drill_fleet
    for i in range(3):
        backup("site", f"s{i}")
    (src / "big.bin").write_bytes(b"29 bytes of a failed dump..\n")
    tiny = backup("site", "s9")
    report = verify.apply_async(kwargs={"backup_id": f"site/{tiny['backup_id']}", "region": "eu-central",
                                        "depth": "quick"}).get(timeout=120)
    assert report["ok"] is False
    assert any(p.startswith("size anomaly:") and "far smaller" in p for p in report["problems"])
    [check] = outcomes.size_checks()
    assert check["flagged"] and check["backup_id"] == tiny["backup_id"]
    assert tiny["backup_id"] not in verifications.verified_backup_ids("site")
    [entry] = audit.entries(action="verification")
    assert entry["outcome"] == "size-anomaly" and entry["details"]["backup_id"] == tiny["backup_id"]


def test_cold_storage_verification_reads_every_cold_copy_and_reports_damage(drill_fleet, tmp_path):
    from drfleet.tasks.drills import verify_cold

    good, bad = backup("site", "s1"), backup("site", "s2")
    stores = tmp_path / "plan" / "stores"
    shutil.copytree(stores / "eu-central" / "datasets", stores / "offsite" / "datasets")
    damaged = next((stores / "offsite" / "datasets" / "site" / "backups" / bad["backup_id"]).iterdir())
    data = bytearray(damaged.read_bytes())
    data[-5] ^= 0xFF
    damaged.write_bytes(bytes(data))
    result = verify_cold.apply_async(kwargs={"region": "eu-central", "slot": "q1"}).get(timeout=120)
    assert result["locations"] == ["offsite"] and result["checked"] == 2
    assert [d["backup_id"] for d in result["damaged"]] == [bad["backup_id"]]
    by_id = {r.backup_id: r for r in verifications.results("site") if r.location == "offsite"}
    assert by_id[good["backup_id"]].ok and not by_id[bad["backup_id"]].ok
    assert sorted(e["outcome"] for e in audit.entries(action="verification")) == ["damaged", "ok"]
    assert backup_time(good["backup_id"]) <= backup_time(bad["backup_id"])
