"""Drills on the data path: restore, region and full drills against real stores, real
scratch targets (directories, PostgreSQL databases) and real Redis state; the faults a
drill must report (restore fails, no scratch target, fingerprint mismatch) each end as a
failed drill with the reason, and the scratch target is always gone afterwards."""

import random
import shutil
import tempfile

import pytest

from drfleet.backup_format.layout import manifest_key
from drfleet.datapath.backup import OBJECT_NAME, run_backup
from drfleet.datapath.catalog import find_backup
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import data_key_for
from drfleet.plan.loader import load_plan
from drfleet.runbooks.drills import run_drill
from drfleet.state import audit, drills
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy


@pytest.fixture
def state(redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    return redis_url


@pytest.fixture
def scratch_dir(tmp_path, monkeypatch):
    """Scratch directories go here, so a test can see that none is left behind."""
    path = tmp_path / "scratch-tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def site(files_plan, state, scratch_dir, monkeypatch):
    plan, src = files_plan
    monkeypatch.setenv("DRFLEET_PLAN", str(src.parents[1] / "plan.yaml"))
    return plan, run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]


def leftovers(scratch_dir):
    return sorted(p.name for p in scratch_dir.iterdir())


def test_a_restore_drill_restores_verifies_and_records_its_rto(site, scratch_dir):
    plan, backup_id = site
    record = run_drill(plan, "restore", region="eu-central", actor="test", rng=random.Random(1))
    assert record.result == "passed", record.reason
    [outcome] = record.datasets
    assert (outcome.dataset, outcome.backup_id, outcome.location) == ("site", backup_id, "eu-central-store")
    assert outcome.ok and outcome.rto_seconds is not None and outcome.rto_seconds >= 0
    assert record.rto_seconds == outcome.rto_seconds and record.rpo_seconds is not None
    names = [s.name for s in record.steps]
    assert names[-4:] == ["site: create scratch target", "site: restore", "site: compare fingerprint",
                          "site: remove scratch target"]
    assert all(s.ok for s in record.steps)
    stored = drills.get(record.drill_id)
    assert stored.result == "passed" and stored.ended_at >= stored.started_at
    assert [s.name for s in stored.steps] == names
    [entry] = audit.entries(action="drill")
    assert entry["outcome"] == "passed" and entry["details"]["drill_id"] == record.drill_id
    assert leftovers(scratch_dir) == []


def test_a_drill_whose_restore_fails_is_a_failed_drill_with_the_reason(site, scratch_dir, tmp_path):
    plan, backup_id = site
    obj = tmp_path / "plan" / "stores" / "eu-central" / "datasets" / "site" / "backups" / backup_id / OBJECT_NAME
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    record = run_drill(plan, "restore", region="eu-central", dataset="site")
    assert record.result == "failed"
    assert record.reason.startswith("site: restore failed:"), record.reason
    assert [s.name for s in record.steps if s.ok is False] == ["site: restore"]
    assert record.steps[-1].name == "site: remove scratch target" and record.steps[-1].ok
    assert leftovers(scratch_dir) == []
    [entry] = audit.entries(action="drill")
    assert entry["outcome"] == "failed" and "restore failed" in entry["details"]["reason"]


def test_a_backup_that_verifies_but_restores_other_data_fails_on_its_fingerprint(site, scratch_dir):
    plan, backup_id = site
    record = find_backup(plan, backup_id)
    m = record.manifest
    altered = dict(m.fingerprint)
    name = sorted(altered)[0]
    altered[name] = "not what was backed up"
    store = store_for(plan, record.location)
    lying = m.replace(fingerprint=altered).sign(data_key_for(plan, m))
    store.delete(manifest_key("site", backup_id))
    store.put_bytes(manifest_key("site", backup_id), lying.to_bytes())

    drill = run_drill(plan, "restore", region="eu-central", dataset="site")
    assert drill.result == "failed"
    assert "compare fingerprint failed: restored data differs from the data backed up" in drill.reason
    assert name in drill.reason
    assert leftovers(scratch_dir) == []


def test_a_region_drill_needs_a_copy_outside_the_region(site, tmp_path):
    plan, backup_id = site
    record = run_drill(plan, "region", region="eu-central")
    assert record.result == "failed"
    assert record.reason == "site: no usable backup of site outside region eu-central"

    stores = tmp_path / "plan" / "stores"
    shutil.copytree(stores / "eu-central" / "datasets", stores / "us-east" / "datasets")
    record = run_drill(plan, "region", region="eu-central")
    assert record.result == "passed", record.reason
    assert record.datasets[0].location == "us-east-store" and record.datasets[0].backup_id == backup_id


def test_a_full_drill_restores_from_offsite_only(site, tmp_path):
    plan, backup_id = site
    stores = tmp_path / "plan" / "stores"
    shutil.copytree(stores / "eu-central" / "datasets", stores / "us-east" / "datasets")
    record = run_drill(plan, "full", region="eu-central")
    assert record.result == "failed" and "in an offsite location" in record.reason

    shutil.copytree(stores / "eu-central" / "datasets", stores / "offsite" / "datasets")
    record = run_drill(plan, "full", region="eu-central")
    assert record.result == "passed", record.reason
    assert record.datasets[0].location == "offsite"


def test_a_failover_drill_runs_the_runbook_it_finds_and_keeps_its_steps(site, monkeypatch):
    plan, _ = site
    calls = []

    def run_failover_drill(plan, scenario, **params):  # the shape of runbooks.runner.run_report
        calls.append((scenario, params))
        return {"result": "failed", "error": "promote-standby: standby did not promote",
                "steps": [{"name": "confirm-region-down", "status": "succeeded", "started_at": 1.0,
                           "finished_at": 2.0, "output": "3 of 3 services down"},
                          {"name": "dns-failover", "status": "failed", "started_at": 2.0,
                           "finished_at": 3.0, "error": "timeout"}]}

    monkeypatch.setattr("drfleet.runbooks.drills.run_failover_drill", run_failover_drill)
    record = run_drill(plan, "failover", region="eu-central", scenario="data center failover")
    assert calls == [("region-failure", {"region": "eu-central"})]
    assert record.result == "failed" and record.reason == "promote-standby: standby did not promote"
    assert [(s.name, s.ok, s.detail) for s in record.steps[1:]] == [
        ("confirm-region-down", True, "3 of 3 services down"), ("dns-failover", False, "timeout")]


def test_a_service_failover_drill_needs_a_service_of_its_region_in_the_recovery_section(site, monkeypatch):
    plan, _ = site
    monkeypatch.setattr("drfleet.runbooks.drills.run_failover_drill",
                        lambda plan, scenario, **params: pytest.fail("must not run"))
    record = run_drill(plan, "failover", region="eu-central", scenario="simulated service failure")
    assert record.result == "not-available" and "recovery.services" in record.reason


def test_unknown_kinds_and_datasets_are_refused_before_anything_is_recorded(site):
    plan, _ = site
    with pytest.raises(ValueError, match="unknown drill kind 'chaos'"):
        run_drill(plan, "chaos", region="eu-central")
    with pytest.raises(KeyError, match="no-such"):
        run_drill(plan, "restore", region="eu-central", dataset="no-such")
    assert drills.history() == []


PG_DATASETS = (dataset("orders-db", policy("hourly", "hourly", "24 hours"), kind="postgres",
                    connection="ORDERS_DB_URL"))


@pytest.fixture
def pg_plan(tmp_path, pg_cluster, state, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring

    path = write_plan(tmp_path / "plan", datasets=PG_DATASETS)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    return load_plan(path)


def scratch_databases(pg_cluster):
    return pg_cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE 'drfleet_scratch_%'")


def test_a_postgres_restore_drill_uses_a_scratch_database_and_drops_it(pg_plan, pg_cluster, monkeypatch):
    pg_cluster.create_database("orders")
    pg_cluster.psql("CREATE TABLE o (id int primary key, v text); "
                    "INSERT INTO o SELECT g, md5(g::text) FROM generate_series(1, 300) g", "orders")
    monkeypatch.setenv("ORDERS_DB_URL", pg_cluster.dsn("orders"))
    run_backup(pg_plan, "orders-db", "hourly", region="eu-central")
    record = run_drill(pg_plan, "restore", region="eu-central")
    assert record.result == "passed", record.reason
    assert record.datasets[0].dataset == "orders-db"
    assert scratch_databases(pg_cluster) == []


def test_a_scratch_database_that_cannot_be_created_fails_the_drill(pg_plan, pg_cluster, monkeypatch):
    pg_cluster.psql("DROP DATABASE IF EXISTS shop WITH (FORCE)")
    pg_cluster.psql("DROP ROLE IF EXISTS drill_owner")
    pg_cluster.psql("CREATE ROLE drill_owner LOGIN NOCREATEDB")
    pg_cluster.psql("CREATE DATABASE shop OWNER drill_owner")
    owner_dsn = pg_cluster.dsn("shop").replace("postgres@", "drill_owner@")
    with __import__("psycopg").connect(owner_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE s (id int primary key); INSERT INTO s SELECT generate_series(1, 10)")
    monkeypatch.setenv("ORDERS_DB_URL", owner_dsn)
    run_backup(pg_plan, "orders-db", "hourly", region="eu-central")
    record = run_drill(pg_plan, "restore", region="eu-central", dataset="orders-db")
    assert record.result == "failed"
    assert record.reason.startswith("orders-db: create scratch target failed: cannot create a scratch database")
    assert "permission denied" in record.reason
    assert scratch_databases(pg_cluster) == []


def test_a_scheduled_failover_drill_takes_its_scenario_from_the_plans_scope(site, monkeypatch):
    plan, _ = site
    calls = []
    monkeypatch.setattr("drfleet.runbooks.drills.run_failover_drill",
                        lambda plan, scenario, **params: calls.append(scenario) or {"result": "succeeded"})
    record = run_drill(plan, "failover", region="eu-central", scope="quarterly data center failover")
    assert calls == ["region-failure"] and record.result == "passed"
