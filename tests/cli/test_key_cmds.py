"""`drfleet keys rewrap` and `drfleet keys check` through the CLI, audited in a real Redis."""

import json
import os

import pytest
from click.testing import CliRunner

from drfleet.backup_format.keyring import create_keyring, rotate_keyring
from drfleet.cli.main import main
from tests.fixtures.fleet import write_plan
from tests.fixtures.util import free_port


@pytest.fixture
def rotated_plan(tmp_path, redis_url, monkeypatch):
    """A plan with two backups under the first content key, then a rotation."""
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    path = write_plan(tmp_path / "plan")
    keys = tmp_path / "plan" / "keys"
    keys.mkdir(mode=0o700)
    create_keyring(keys / "content.keyring", "content")
    create_keyring(keys / "offsite.keyring", "offsite")
    plan = load_plan(path)
    backups = [run_backup(plan, "site", "hourly", region="eu-central")["backup_id"] for _ in range(2)]
    new_key = rotate_keyring(keys / "content.keyring")
    return path, backups, new_key


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def manifests(tmp_path):
    return {p: p.read_bytes() for p in (tmp_path / "plan" / "stores").rglob("*.json")}


def test_rewrap_states_what_it_will_do_and_needs_yes(rotated_plan, tmp_path):
    plan, backups, new_key = rotated_plan
    before = manifests(tmp_path)
    out = run("keys", "rewrap", "content", "--plan", str(plan), input="n\n")
    assert out.exit_code == 1  # aborted at the question
    assert "will re-wrap 2 manifest(s) of content in eu-central-store from content-" in out.output
    assert f"to {new_key}; data objects are not touched" in out.output
    assert manifests(tmp_path) == before


def test_dry_run_lists_and_changes_nothing(rotated_plan, tmp_path):
    plan, backups, new_key = rotated_plan
    before = manifests(tmp_path)
    out = run("keys", "rewrap", "content", "--dry-run", "--json", "--plan", str(plan))
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["dry_run"] and report["active_key_id"] == new_key and len(report["pending"]) == 2
    assert manifests(tmp_path) == before


def test_rewrap_with_yes_moves_every_backup_and_audits_each(rotated_plan, tmp_path):
    plan, backups, new_key = rotated_plan
    out = run("keys", "rewrap", "content", "--yes", "--plan", str(plan))
    assert out.exit_code == 0, out.output
    assert out.output.count("re-wrapped  eu-central-store: site/") == 2
    audit = run("audit", "--json", "--plan", str(plan))
    records = [json.loads(line) for line in audit.output.splitlines()]
    per_manifest = [r["details"] for r in records if r["action"] == "keys.rewrap.manifest"]
    assert sorted(d["backup_id"] for d in per_manifest) == sorted(backups)
    assert {d["to_key"] for d in per_manifest} == {new_key}
    assert [r["outcome"] for r in records if r["action"] == "keys.rewrap"] == ["succeeded", "started"]  # newest first
    again = run("keys", "rewrap", "content", "--yes", "--plan", str(plan))
    assert again.exit_code == 0 and "nothing to re-wrap" in again.output


def test_rewrap_refuses_to_run_unrecorded(rotated_plan, tmp_path, monkeypatch):
    plan, _, _ = rotated_plan
    monkeypatch.setenv("DRFLEET_STATE_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    before = manifests(tmp_path)
    out = CliRunner().invoke(main, ["keys", "rewrap", "content", "--yes", "--plan", str(plan)])
    assert out.exit_code == 1
    assert "the audit log is unreachable; refusing to re-wrap keys unrecorded" in out.output
    assert manifests(tmp_path) == before


def test_keys_check_passes_then_flags_a_group_readable_keyring(rotated_plan, tmp_path):
    plan, _, _ = rotated_plan
    ok = run("keys", "check", "--plan", str(plan))
    assert ok.exit_code == 0 and "content" in ok.output and "offsite" in ok.output
    os.chmod(tmp_path / "plan" / "keys" / "content.keyring", 0o644)
    bad = CliRunner().invoke(main, ["keys", "check", "--plan", str(plan)])
    assert bad.exit_code == 1
    assert "content: keyring file is accessible to group or others" in bad.output
    assert "chmod 600" in bad.output
