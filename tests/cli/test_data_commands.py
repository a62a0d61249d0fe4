"""The data commands end to end: CLI in this process, tasks on a real worker."""

import json

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main


@pytest.fixture
def worker_fleet(fleet, fleet_plan):
    from drfleet.backup_format.keyring import create_keyring
    keys = fleet_plan.parent / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    create_keyring(keys / "content.keyring", "content")
    fleet.worker("eu-central")
    return fleet, fleet_plan


def run(*args):
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    return result


def test_backup_wait_list_verify_restore(worker_fleet, tmp_path):
    fleet, plan = worker_fleet
    out = run("backup", "site", "--wait", "--plan", str(plan))
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["status"] == "committed"
    listed = run("backups", "list", "site", "--json", "--plan", str(plan))
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["backup_id"] for r in rows] == [summary["backup_id"]]
    verified = run("verify", f"site/{summary['backup_id']}", "--plan", str(plan))
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    target = tmp_path / "restored"
    dry = run("restore", summary["backup_id"], "--to", str(target), "--dry-run", "--plan", str(plan))
    assert dry.exit_code == 0 and json.loads(dry.stdout)["dataset"] == "site" and not target.exists()
    restored = run("restore", summary["backup_id"], "--to", str(target), "--plan", str(plan))
    assert restored.exit_code == 0, restored.output
    assert (target / "index.html").read_text() == "hello\n"
    audit = run("audit", "--action", "drfleet.backup", "--json", "--plan", str(plan))
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["outcome"], r["actor"]) for r in records] == [("succeeded", "cli"), ("started", "cli")]  # newest first


def test_verify_exits_1_on_damage(worker_fleet):
    fleet, plan = worker_fleet
    out = run("backup", "site", "--wait", "--plan", str(plan))
    backup_id = json.loads(out.stdout)["backup_id"]
    obj = next((plan.parent / "stores" / "eu-central").rglob("data-0000.zst.dfe"))
    data = bytearray(obj.read_bytes())
    data[-5] ^= 1
    obj.write_bytes(bytes(data))
    verified = run("verify", backup_id, "--plan", str(plan))
    assert verified.exit_code == 1
    assert "data-0000.zst.dfe" in json.loads(verified.stdout)["problems"][0]


def test_unknown_dataset_is_a_clear_error(worker_fleet):
    fleet, plan = worker_fleet
    out = CliRunner().invoke(main, ["backup", "nope", "--plan", str(plan)])
    assert out.exit_code != 0 and "known: site" in out.output


def test_restore_over_a_database_says_what_it_will_do_and_asks_unless_yes(tmp_path, monkeypatch, redis_url):
    from tests.fixtures.fleet import write_plan
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    plan = write_plan(tmp_path / "plan")
    described = {"backup_id": "20261101T000000Z-0000abcd", "dataset": "cache", "kind": "redis",
                 "location": "eu-central-store", "target": "redis://127.0.0.1:6390/0"}
    restored = []
    monkeypatch.setattr("drfleet.datapath.restore.describe_restore", lambda *a, **k: described)
    monkeypatch.setattr("drfleet.datapath.restore.restore_backup",
                        lambda *a, **k: restored.append(a) or {**described, "status": "restored"})
    args = ["restore", "cache/20261101T000000Z-0000abcd", "--to", "env:CACHE_URL", "--local", "--plan", str(plan)]
    declined = CliRunner().invoke(main, args, input="n\n")
    assert declined.exit_code == 1 and restored == []
    assert "will restore redis backup 20261101T000000Z-0000abcd of cache" in declined.stderr
    assert "shut down and its dataset replaced" in declined.stderr and "restore over this target?" in declined.stderr
    agreed = CliRunner().invoke(main, args + ["--yes"])
    assert agreed.exit_code == 0, agreed.output
    assert len(restored) == 1
    records = [json.loads(line) for line in run("audit", "--action", "drfleet.restore", "--json",
                                                "--plan", str(plan)).output.splitlines()]
    assert [(r["actor"], r["details"]["backup_id"]) for r in records] == [("cli", "20261101T000000Z-0000abcd")]
