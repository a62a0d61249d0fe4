"""The data commands end to end: CLI in this process, tasks on a real worker."""

import json

import pytest
from click.testing import CliRunner

from cli.main import main


@pytest.fixture
def worker_fleet(fleet, fleet_plan):
    from backup_format.keyring import create_keyring
    keys = fleet_plan.parent / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    create_keyring(keys / "content.keyring", "content")
    fleet.worker("eu-central")
    return fleet, fleet_plan


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_backup_wait_list_verify_restore(worker_fleet, tmp_path):
    fleet, plan = worker_fleet
    out = run("backup", "site", "--wait", "--plan", str(plan))
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output[out.output.index("{"):])
    assert summary["status"] == "committed"
    listed = run("backups", "list", "site", "--json", "--plan", str(plan))
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["backup_id"] for r in rows] == [summary["backup_id"]]
    verified = run("verify", f"site/{summary['backup_id']}", "--plan", str(plan))
    assert verified.exit_code == 0 and json.loads(verified.output)["ok"] is True
    target = tmp_path / "restored"
    dry = run("restore", summary["backup_id"], "--to", str(target), "--dry-run", "--plan", str(plan))
    assert dry.exit_code == 0 and json.loads(dry.output)["dataset"] == "site" and not target.exists()
    restored = run("restore", summary["backup_id"], "--to", str(target), "--plan", str(plan))
    assert restored.exit_code == 0, restored.output
    assert (target / "index.html").read_text() == "hello\n"
    audit = run("audit", "--action", "drfleet.backup", "--json", "--plan", str(plan))
    records = [json.loads(line) for line in audit.output.splitlines()]
    assert [(r["outcome"], r["actor"]) for r in records] == [("started", "cli"), ("succeeded", "cli")]


def test_verify_exits_1_on_damage(worker_fleet):
    fleet, plan = worker_fleet
    out = run("backup", "site", "--wait", "--plan", str(plan))
    backup_id = json.loads(out.output[out.output.index("{"):])["backup_id"]
    obj = next((plan.parent / "stores" / "eu-central").rglob("data-0000.zst.dfe"))
    data = bytearray(obj.read_bytes())
    data[-5] ^= 1
    obj.write_bytes(bytes(data))
    verified = run("verify", backup_id, "--plan", str(plan))
    assert verified.exit_code == 1
    assert "data-0000.zst.dfe" in json.loads(verified.output)["problems"][0]


def test_unknown_dataset_is_a_clear_error(worker_fleet):
    fleet, plan = worker_fleet
    out = CliRunner().invoke(main, ["backup", "nope", "--plan", str(plan)])
    assert out.exit_code != 0 and "known: site" in out.output
