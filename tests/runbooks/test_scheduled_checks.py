"""What the plan says, scheduled: health checks per service and database from the recovery
section, ``verification.deep_check`` per region, copies check with repair per region, MongoDB
oplog capture per its policy, cold-storage verification on its trigger; and the scheduled
tasks themselves run against real stores."""

from __future__ import annotations

from pathlib import Path

from drfleet.beat_schedule.entries import beat_schedule, schedule_entries
from drfleet.plan.loader import load_plan
from tests.fixtures.plans import dataset, policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def entries(name):
    return schedule_entries(load_plan(EXAMPLES / name))


def test_every_service_and_database_of_the_recovery_section_is_health_checked_on_its_control_lane():
    rows = entries("microservices.yaml")
    health = {e.kwargs["service"]: e for e in rows if e.kind == "health"}
    assert set(health) == {"auth", "chain", "ghost", "mautic", "analytics", "logs"}
    assert health["analytics"].queue == "us-east.control" and health["auth"].queue == "eu-central.control"
    assert health["auth"].every_seconds == 30
    dbs = {e.dataset: e for e in rows if e.kind == "db-check"}
    assert set(dbs) == {"auth-db", "ghost-db", "mautic-db", "analytics-db"}
    assert dbs["analytics-db"].queue == "us-east.control"
    sched = beat_schedule(load_plan(EXAMPLES / "microservices.yaml"))
    assert sched["health auth"]["task"] == "drfleet.health_check"
    assert sched["health auth"]["schedule"].run_every.total_seconds() == 30


def test_deep_check_copies_check_oplog_and_cold_storage_are_scheduled_from_the_plans_words():
    rows = entries("microservices.yaml")
    deep = [e for e in rows if e.kind == "deep-verify"]
    assert sorted(e.region for e in deep) == ["ap-southeast", "eu-central", "us-east"]
    assert {e.trigger.cron for e in deep} == {load_plan(EXAMPLES / "microservices.yaml").verification.deep_check.cron}
    per_region = [e for e in rows if e.task == "drfleet.copies_check_region"]
    assert sorted(e.queue for e in per_region) == ["ap-southeast.data", "eu-central.data", "us-east.data"]
    cold = [e for e in rows if e.kind == "verify-cold"]
    assert len(cold) == 1 and cold[0].trigger.cron == "0 0 1 1,4,7,10 *"   # quarterly
    oplog = [e for e in entries("plugspace.yaml") if e.kind == "oplog"]
    assert [(e.dataset, e.policy, e.queue, e.trigger.cron) for e in oplog] == [
        ("mongodb", "oplog", "eu-central.data", "0 */6 * * *")]
    plugspace_deep = [e for e in entries("plugspace.yaml") if e.kind == "deep-verify"]
    assert plugspace_deep and plugspace_deep[0].trigger.cron == "0 0 1 * *"   # monthly


def test_deep_verify_and_the_regions_copies_check_run_on_a_real_worker(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.datapath.catalog import list_backups
    from drfleet.state import verifications
    from tests.fixtures.fleet import Fleet, add_plan_queues, write_plan

    src = tmp_path / "site"
    src.mkdir()
    (src / "index.html").write_text("hello\n" * 1000)
    datasets = dataset("site", policy("hourly", "hourly", "24 hours", copies=["all-regions"]), source=src)
    path = write_plan(tmp_path / "plan", datasets=datasets)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    create_keyring(tmp_path / "plan" / "keys" / "offsite.keyring", "offsite")
    for name, value in {"DRFLEET_PLAN": str(path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = redis_url
    add_plan_queues(app, path)
    plan = load_plan(path)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]   # no copy made yet
    fleet = Fleet(tmp_path, redis_url, path)
    try:
        fleet.worker("eu-central", lane="data")
        from drfleet.tasks.drills import copies_check_region, deep_verify
        repaired = copies_check_region.apply_async(kwargs={"region": "eu-central", "slot": "test:1"}).get(timeout=120)
        assert any("us-east-store" in r for r in map(str, repaired["repaired"])), repaired
        assert [b.location for b in list_backups(plan, "site").backups] == ["eu-central-store", "us-east-store"]
        deep = deep_verify.apply_async(kwargs={"region": "eu-central", "slot": "test:1"}).get(timeout=120)
        assert deep["checked"] == [f"site/{backup_id}"]
        [result] = [r for r in verifications.results("site") if r.depth == "deep"]
        assert result.ok and result.location == "eu-central-store"
    finally:
        fleet.stop()
