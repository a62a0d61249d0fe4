"""The first seed plan's test schedule, run: its region (quarterly) and full (bi-annual)
drills, from the schedule entries of examples/microservices.yaml with its datasets, policies
and copy targets as written, stores made local (filesystem instead of the buckets) and the
PostgreSQL databases on a real local cluster. Every dataset is backed up under each of its
policies and copied where its policy says. The drills then find exactly what
``drfleet plan check`` predicts: the region drill fails only for the dataset with no copy
outside eu-central (user-uploads), the full drill only for the datasets with no offsite copy
(analytics-db, region-only; blockchain-state, all-regions only); every other dataset is
restored, fingerprint-checked and timed against its target."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drfleet.backup_format.keyring import create_keyring
from drfleet.beat_schedule.entries import schedule_entries
from drfleet.datapath.backup import run_backup
from drfleet.datapath.copy import copy_to_policy_locations
from drfleet.plan.loader import validate_document
from drfleet.plan.recovery import dataset_locations, lost_with_region
from drfleet.runbooks.drills import run_drill

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "microservices.yaml"


def localized(tmp: Path, pg_cluster, monkeypatch):
    doc = yaml.safe_load(EXAMPLE.read_text())
    for name, loc in doc["storage"].items():
        keep = {k: loc[k] for k in ("region", "offsite", "jurisdiction", "default", "key") if k in loc}
        doc["storage"][name] = {"kind": "filesystem", "path": str(tmp / "stores" / name), **keep}
    (tmp / "keys").mkdir(mode=0o700)
    for category in doc["keys"]:
        create_keyring(tmp / "keys" / f"{category}.keyring", category)
        doc["keys"][category] = {"file": str(tmp / "keys" / f"{category}.keyring")}
    for name, ds in doc["datasets"].items():
        if ds["kind"] == "files":
            src = tmp / "src" / name
            src.mkdir(parents=True)
            (src / "data.txt").write_text(f"{name}\n" * 100)
            ds["source"] = {"path": str(src)}
        else:
            dsn = pg_cluster.create_database(name.replace("-", "_"))
            pg_cluster.psql(f"CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, '{name}' "
                            "FROM generate_series(1, 50) g", db=name.replace("-", "_"))
            env = f"SHIPPED_{name.upper().replace('-', '_')}_URL"
            monkeypatch.setenv(env, dsn)
            ds["connection"] = {"env": env}
    doc.pop("recovery")                    # hosts, clouds and DNS of the real fleet: not drilled here
    doc.pop("hosts")
    return validate_document(doc, source="localized microservices.yaml")


@pytest.fixture
def plan(tmp_path, pg_cluster, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    plan = localized(tmp_path, pg_cluster, monkeypatch)
    for name, ds in plan.datasets.items():
        for policy in ds.policies:
            if policy.mode == "wal":
                continue                   # WAL is archived by PostgreSQL, not backed up here
            backup = run_backup(plan, name, policy.name, region=ds.region)
            copy_to_policy_locations(plan, f"{name}/{backup['backup_id']}")
    return plan


def test_the_first_plans_region_and_full_drills_find_what_plan_check_predicts(plan):
    drills = {e.kwargs["kind"]: e for e in schedule_entries(plan) if e.kind == "drill"}
    assert {k: e.trigger.cron for k, e in drills.items() if k in ("region", "full")} == {
        "region": "0 0 1 1,4,7,10 *", "full": "0 0 1 1,7 *"}          # quarterly, bi-annually

    region = run_drill(plan, "region", region=drills["region"].kwargs["region"], scope=drills["region"].kwargs["scope"])
    failed = {o.dataset for o in region.datasets if not o.ok}
    assert failed == set(lost_with_region(plan, "eu-central")) == {"user-uploads"}, region.reason
    homed = {n for n, d in plan.datasets.items() if d.region == "eu-central"}
    assert {o.dataset for o in region.datasets} == homed
    for outcome in region.datasets:
        if outcome.ok:
            assert outcome.rto_seconds is not None and outcome.rpo_seconds is not None
            assert outcome.location not in ("eu-central-store", "offsite-a")   # from outside the region

    full = run_drill(plan, "full", region=drills["full"].kwargs["region"], scope=drills["full"].kwargs["scope"])
    offsite = {n for n, loc in plan.storage.items() if loc.offsite}
    without_offsite = {n for n in plan.datasets if not dataset_locations(plan, n) & offsite}
    assert {o.dataset for o in full.datasets if not o.ok} == without_offsite == {"analytics-db", "blockchain-state"}
    assert all(o.location in offsite for o in full.datasets if o.ok)
    print(f"\nregion drill: {len(region.datasets) - len(failed)}/{len(region.datasets)} restored, worst RTO "
          f"{max(o.rto_seconds for o in region.datasets if o.ok):.1f}s; full drill: "
          f"{sum(o.ok for o in full.datasets)}/{len(full.datasets)} restored")
