"""The prune task on a real worker: a region prunes the locations it looks after, once per
slot, audited; a dry run deletes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from drfleet.datapath.locations import store_for
from drfleet.plan.loader import load_plan
from drfleet.state import audit
from tests.datapath.retention_builders import committed, put_backup
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy

DATASETS = (dataset("site", policy("daily", "daily", "2 versions", copies=["home-region", "offsite"]),
                    source="/srv/site", rto="1h"))


@pytest.fixture
def fleet_plan(tmp_path):
    """Overrides the fleet fixture's plan: one dataset keeping 2 versions, copied offsite."""
    return write_plan(tmp_path / "plan", datasets=DATASETS)


@pytest.fixture
def stocked(fleet, fleet_plan):
    """Four daily backups in every store (the us-east store belongs to another region's prune)."""
    plan = load_plan(fleet_plan)
    stores = [store_for(plan, n) for n in ("eu-central-store", "offsite", "us-east-store")]
    start = datetime.now(timezone.utc) - timedelta(days=10)
    ids = [put_backup(stores, "site", "daily", start + timedelta(days=k)) for k in range(4)]
    fleet.worker("eu-central")
    return plan, stores, ids


def send(celery_app, **kwargs):
    from drfleet.tasks.prune import prune
    return prune.apply_async(kwargs={"region": "eu-central", **kwargs},
                             headers={"drfleet_actor": "cli"}).get(timeout=60)


def test_a_region_prunes_its_locations_and_audits_every_deletion(stocked, celery_app):
    plan, (home, offsite, other), ids = stocked
    result = send(celery_app, slot="2024-05-01T03:00Z")
    assert [(loc["location"], loc["deleted_count"], loc["kept"]) for loc in result["locations"]] == [
        ("eu-central-store", 2, 2), ("offsite", 2, 2)]
    assert committed(home) == committed(offsite) == set(ids[2:])
    assert committed(other) == set(ids)  # us-east's store is us-east's prune's business
    deletions = list(audit.entries(action="prune.delete"))
    assert sorted((d["details"]["location"], d["details"]["backup_id"]) for d in deletions) == sorted(
        (loc, b) for loc in ("eu-central-store", "offsite") for b in ids[:2])
    assert {d["actor"] for d in deletions} == {"cli"}
    task_records = [(r["outcome"], r["details"]["region"]) for r in audit.entries(action="drfleet.prune")]
    assert task_records == [("started", "eu-central"), ("succeeded", "eu-central")]


def test_one_slot_prunes_once(stocked, celery_app):
    plan, (home, offsite, other), ids = stocked
    send(celery_app, slot="2024-05-01T03:00Z")
    newer = put_backup([home], "site", "daily", datetime.now(timezone.utc))
    again = send(celery_app, slot="2024-05-01T03:00Z")
    assert again["status"] in ("duplicate", "already-succeeded")
    assert committed(home) == set(ids[2:]) | {newer}
    send(celery_app, slot="2024-05-02T03:00Z")
    assert committed(home) == {ids[3], newer}


def test_a_dry_run_on_the_worker_deletes_nothing(stocked, celery_app):
    plan, (home, offsite, other), ids = stocked
    result = send(celery_app, dry_run=True)
    assert [loc["deleted"] for loc in result["locations"]] == [[f"site/{b}" for b in ids[:2]]] * 2
    assert committed(home) == committed(offsite) == set(ids)
    assert list(audit.entries(action="prune.delete")) == []
