"""A backup whose database is away for a moment is retried within its slot on a real
worker and commits once; a failure no retry can fix fails at once."""

import pytest

from drfleet.plan.loader import load_plan
from drfleet.providers.datasources.errors import SourceToolFailed
from drfleet.providers.storage import StoreUnavailable
from drfleet.retry import is_transient
from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy
from tests.fixtures.postgres_cluster import PostgresCluster
from tests.fixtures.util import wait_for

DATASETS = """\
orders-db:
  kind: postgres
  region: eu-central
  connection: {env: ORDERS_DB_URL}
  key: content
  rpo: 1h
  rto: 15m
  policies:
    - {name: hourly, trigger: hourly, keep: 24 hours, copies: [home-region]}
"""


@pytest.fixture
def own_cluster():
    cluster = PostgresCluster().start()
    cluster.create_database("orders")
    cluster.psql("CREATE TABLE o (id int primary key); INSERT INTO o SELECT generate_series(1, 500)", "orders")
    yield cluster
    cluster.cleanup()


def test_a_database_away_at_the_first_attempt_is_retried_and_committed_once(tmp_path, redis_url, own_cluster,
                                                                            monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.catalog import list_backups

    plan_path = write_plan(tmp_path / "plan", datasets=DATASETS)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    env = {"ORDERS_DB_URL": own_cluster.dsn("orders"), "DRFLEET_BACKUP_RETRY_SECONDS": "1"}
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url, **env}.items():
        monkeypatch.setenv(name, value)
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = redis_url
    fleet = Fleet(tmp_path, redis_url, plan_path, env_extra=env)
    try:
        fleet.worker("eu-central", lane="data")
        own_cluster.stop()
        from drfleet.tasks.backup import backup
        result = backup.apply_async(kwargs={"dataset": "orders-db", "policy": "hourly", "region": "eu-central",
                                            "slot": "2026-11-21T04:00:00+00:00"})
        wait_for(lambda: result.state == "RETRY", timeout=60, what="the first attempt to fail and retry")
        own_cluster.start()
        summary = result.get(timeout=120)
        assert summary["status"] == "committed"
        plan = load_plan(plan_path)
        assert [b.backup_id for b in list_backups(plan, "orders-db").backups] == [summary["backup_id"]]
    finally:
        fleet.stop()


def test_only_failures_a_later_attempt_can_get_past_are_transient():
    lost = SourceToolFailed("pg_dump", 1, ["pg_dump: error: connection to server at \"127.0.0.1\", port 5 "
                                           "failed: Connection refused"])
    refused = SourceToolFailed("pg_dump", 1, ['pg_dump: error: FATAL:  password authentication failed for '
                                              'user "app"'])
    missing = SourceToolFailed("pg_dump", 1, ['pg_dump: error: connection to server at "127.0.0.1", port 5432 '
                                              'failed: FATAL:  database "no_such_db" does not exist'])
    restarted = SourceToolFailed("pg_dump", 1, ['pg_dump: error: Dumping the contents of table "t" failed: '
                                                'PQgetCopyData() failed.', 'pg_dump: detail: server closed the '
                                                'connection unexpectedly'])
    assert is_transient(lost) and is_transient(restarted)
    assert not is_transient(refused) and not is_transient(missing)
    assert is_transient(StoreUnavailable("s3-offsite", "datasets/x", "connection reset"))
    assert not is_transient(ValueError("bad plan"))


def _site_plan(tmp_path):

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    plan_path = write_plan(tmp_path / "plan", datasets=dataset("site", policy("hourly", "hourly", "24 hours"),
                                                               source=src))
    from drfleet.backup_format.keyring import create_keyring
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    return load_plan(plan_path)


def test_a_redelivered_backup_with_a_slot_that_is_not_a_time_still_finds_its_own_manifest(tmp_path):
    from drfleet.datapath.backup import run_backup
    from drfleet.tasks.backup import committed_for

    plan = _site_plan(tmp_path)
    done = run_backup(plan, "site", "hourly", region="eu-central", slot="event:deploy-17", task_id="task-1")
    found = committed_for(plan, "site", "hourly", "task-1", "event:deploy-17")
    assert found["backup_id"] == done["backup_id"] and found["resumed"] is True
    assert committed_for(plan, "site", "hourly", "task-2", "event:deploy-17") is None


def test_a_scheduled_slot_committed_by_another_message_is_found_by_its_slot(tmp_path):
    """Redis lost the claim of a run that committed (a failover) and the slot was sent
    again under a new task id: the store says the slot is done."""
    from datetime import datetime, timedelta, timezone

    from drfleet.datapath.backup import run_backup
    from drfleet.tasks.backup import committed_for

    plan = _site_plan(tmp_path)
    for age in (timedelta(0), timedelta(days=30)):  # a slot of today, and one beyond the day-prefix listing
        slot = (datetime.now(timezone.utc) - age).replace(microsecond=0).isoformat()
        assert committed_for(plan, "site", "hourly", "task-b", slot) is None
        done = run_backup(plan, "site", "hourly", region="eu-central", slot=slot, task_id=f"task-a{age.days}")
        found = committed_for(plan, "site", "hourly", "task-b", slot)
        assert found and found["backup_id"] == done["backup_id"]
        other_slot = (datetime.fromisoformat(slot) - timedelta(hours=1)).isoformat()
        assert committed_for(plan, "site", "hourly", "task-b", other_slot) is None
