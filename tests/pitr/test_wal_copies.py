"""WAL wherever the plan sends the backups (pitr.walcopy), on a real primary that archives
with `drfleet wal push` into its home store: copies to the other region and to an offsite
store under its own key, what losing each region would cost, and the home region lost:
auth-db restored to the latest archived WAL from the other region's copies alone."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.datapath.copy import SovereigntyViolation, copy_backup
from drfleet.datapath.locations import store_for
from drfleet.pitr.basebackup import run_base_backup
from drfleet.pitr.errors import WalRecordInvalid
from drfleet.pitr.wal import list_records, object_key, read_record, record_key
from drfleet.pitr.walcopy import copy_wal, copy_wal_everywhere, region_losses, wal_locations

# one primary for the module, its tests in order on one xdist worker (the last ones destroy it)
pytestmark = pytest.mark.xdist_group("wal-copies")


@pytest.fixture(scope="module")
def copied(pitr_regions_setup):
    """Rows, a base backup copied to us-east, more rows, WAL switched and copied everywhere."""
    s = pitr_regions_setup
    s.sql("CREATE TABLE logins (id serial PRIMARY KEY, who text)")
    s.sql("INSERT INTO logins (who) SELECT 'before-' || g FROM generate_series(1, 50) g")
    base = run_base_backup(s.plan, s.dataset, policy="hourly")
    copy_backup(s.plan, f"{s.dataset}/{base['backup_id']}", "us")
    s.sql("INSERT INTO logins (who) SELECT 'after-' || g FROM generate_series(1, 25) g")
    last = s.switch_and_wait()
    results = {r.location: r for r in copy_wal_everywhere(s.plan, s.dataset)}
    return {"base": base, "last": last, "results": results}


def _names(plan, location, dataset):
    return {name for name, _ in list_records(store_for(plan, location), dataset)}


def test_every_archived_file_reaches_the_other_region_and_offsite(pitr_regions_setup, copied):
    s = pitr_regions_setup
    assert wal_locations(s.plan, s.dataset) == ["home", "us", "vault"]
    home = _names(s.plan, "home", s.dataset)
    assert copied["last"] in home
    assert _names(s.plan, "us", s.dataset) == home == _names(s.plan, "vault", s.dataset)
    assert copied["results"]["us"].lag_seconds == 0 and copied["results"]["vault"].lag_seconds == 0
    again = copy_wal_everywhere(s.plan, s.dataset)
    assert [len(r.copied) for r in again] == [0, 0] and all(r.already == len(home) for r in again)


def test_the_offsite_copy_is_wrapped_by_the_offsite_key_only(pitr_regions_setup, copied):
    s = pitr_regions_setup
    name = copied["last"]
    at_home = read_record(store_for(s.plan, "home"), s.dataset, name)
    offsite = read_record(store_for(s.plan, "vault"), s.dataset, name)
    assert {k["category"] for k in at_home.keys} == {"auth"}
    assert {k["category"] for k in offsite.keys} == {"vault"}
    assert offsite.mac == at_home.mac and offsite.stored_sha256 == at_home.stored_sha256
    # the offsite archive alone reads back the same bytes (the vault key unwraps it)
    run = CliRunner().invoke(main, ["wal", "check", "--plan", str(s.plan_path), "--from", "vault", s.dataset, "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["location"] == "vault"


def test_losing_the_home_region_costs_the_age_of_the_newest_wal_outside_it(pitr_regions_setup, copied):
    s = pitr_regions_setup
    pushed = read_record(store_for(s.plan, "us"), s.dataset, copied["last"]).pushed_at
    losses = {x.region: x for x in region_losses(s.plan, s.dataset, now=pushed + timedelta(seconds=42))}
    assert losses["us-east"].loses_seconds is None  # the primary runs in eu-central
    home = losses["eu-central"]
    assert home.loses_seconds == pytest.approx(42, abs=0.01) and home.survivor in ("us", "vault")
    assert "loses 42 s" in home.describe(s.dataset)


def test_the_report_says_what_losing_the_home_region_would_cost(pitr_regions_setup, copied):
    from drfleet.report.rpo import region_loss
    s = pitr_regions_setup
    pushed = read_record(store_for(s.plan, "us"), s.dataset, copied["last"]).pushed_at
    assert region_loss(s.plan, s.dataset, now=pushed.timestamp() + 90) == \
        {"eu-central": pytest.approx(90, abs=0.01), "us-east": None}

def test_a_damaged_object_at_home_is_not_copied_and_leaves_nothing_at_the_destination(pitr_regions_setup, copied):
    s = pitr_regions_setup
    s.sql("INSERT INTO logins (who) VALUES ('damaged')")
    name = s.switch_and_wait()
    record = read_record(store_for(s.plan, "home"), s.dataset, name)
    path = s.store / object_key(s.dataset, name, record.object)
    saved = path.read_bytes()
    path.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    try:
        with pytest.raises(WalRecordInvalid) as raised:
            copy_wal(s.plan, s.dataset, "us")
        assert raised.value.facts["wal_file"] == name
        assert name not in _names(s.plan, "us", s.dataset)
        assert not (s.base / "store-us" / record_key(s.dataset, name)).exists()
    finally:
        path.write_bytes(saved)
    assert name in copy_wal(s.plan, s.dataset, "us").copied


def test_the_home_region_lost_auth_db_comes_back_from_the_other_regions_copies(pitr_regions_setup, copied, tmp_path):
    s = pitr_regions_setup
    copy_wal_everywhere(s.plan, s.dataset)
    expected = s.sql("SELECT count(*) FROM logins")[0][0]
    s.stop_all()
    shutil.rmtree(s.store)  # the home region's store is gone with the region
    s.give_to_owner(s.base / "store-us")  # the restore_command runs as postgres on the new host
    target = s.new_dir("restored-in-us-east")
    run = CliRunner().invoke(main, ["restore", "--plan", str(s.plan_path), s.dataset, "--to", target,
                                    "--at", "latest", "--location", "us", "--local", "--json"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output)
    assert summary["status"] == "recovered" and summary["location"] == "us"
    assert summary["backup_id"] == copied["base"]["backup_id"]
    rows = s.sql("SELECT count(*), count(*) FILTER (WHERE who LIKE 'after-%') FROM logins", port=summary["port"])[0]
    assert rows == (expected, 25)


def test_a_region_only_datasets_wal_never_leaves_its_region(pitr_regions_setup):
    s = pitr_regions_setup
    plan = s.plan
    ds = plan.datasets[s.dataset].model_copy(update={"region_only": True})
    plan = plan.model_copy(update={"datasets": {**plan.datasets, s.dataset: ds}})
    assert wal_locations(plan, s.dataset) == ["home"]
    with pytest.raises(SovereigntyViolation):
        copy_wal(plan, s.dataset, "us")

