"""`drfleet copies check` from the command line: a clean report, a repair it names, --json,
--no-repair and its exit status."""

import json

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.datapath.backup import run_backup
from drfleet.datapath.copy import copy_to_policy_locations
from tests.datapath.copy_plans import make_copy_plan, manifest_file, manifests_at, object_file


@pytest.fixture
def copied(tmp_path):
    root = tmp_path / "plan"
    plan, _ = make_copy_plan(root)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    copy_to_policy_locations(plan, f"site/{backup_id}")
    return root, backup_id


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_all_copies_good_exits_0(copied):
    root, backup_id = copied
    out = run("copies", "check", "site", "--plan", str(root / "plan.yaml"))
    assert out.exit_code == 0, out.output
    assert "0 copies repaired" in out.output
    assert sum(" ok" in line for line in out.output.splitlines()) == 3


def test_a_missing_copy_is_repaired_and_named(copied):
    root, backup_id = copied
    manifest_file(root, "us-east-store", backup_id).unlink()
    out = run("copies", "check", "--plan", str(root / "plan.yaml"))
    assert out.exit_code == 0, out.output
    assert f"1 copy repaired: site/{backup_id}@us-east-store" in out.output
    assert "re-seeded from eu-central-store" in out.output
    assert manifests_at(root, "us-east-store") == [backup_id]


def test_json_report_lists_every_copy_and_the_repair(copied):
    root, backup_id = copied
    data = bytearray(object_file(root, "vault", backup_id).read_bytes())
    data[100] ^= 1
    object_file(root, "vault", backup_id).write_bytes(bytes(data))
    out = run("copies", "check", "site", "--json", "--plan", str(root / "plan.yaml"))
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["ok"] is False and report["healthy"] is True
    assert report["repaired"] == [f"site/{backup_id}@vault"]
    (backup,) = report["backups"]
    assert {c["location"]: c["status"] for c in backup["copies"]} == \
        {"eu-central-store": "ok", "us-east-store": "ok", "vault": "damaged"}


def test_no_repair_reports_the_damage_and_exits_1(copied):
    root, backup_id = copied
    manifest_file(root, "vault", backup_id).unlink()
    out = run("copies", "check", "site", "--no-repair", "--plan", str(root / "plan.yaml"))
    assert out.exit_code == 1
    assert "MISSING" in out.output and "vault" in out.output
    assert manifests_at(root, "vault") == []


def test_an_unknown_dataset_is_a_clear_error(copied):
    root, _ = copied
    out = CliRunner().invoke(main, ["copies", "check", "nope", "--plan", str(root / "plan.yaml")])
    assert out.exit_code == 1 and "nope" in out.output and "site" in out.output
