"""Key rotation on the plan's rotate_every: scheduled by beat, audited, old keys kept."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures.fleet import write_plan


@pytest.fixture
def rotating_plan(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    path = write_plan(tmp_path / "plan", keys="audit: {env: AUDIT_KEYRING, rotate_every: 30 days}\n")
    text = path.read_text().replace("content: {file: " + str(tmp_path / "plan/keys/content.keyring") + "}",
                                    "content: {file: " + str(tmp_path / "plan/keys/content.keyring")
                                    + ", rotate_every: 90 days}")
    path.write_text(text)
    keys = tmp_path / "plan" / "keys"
    keys.mkdir(mode=0o700)
    create_keyring(keys / "content.keyring", "content")
    for name in ("DRFLEET_BROKER_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    plan = load_plan(path)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    return plan, backup_id


def test_beat_checks_the_categories_with_rotate_every_daily(rotating_plan):
    from drfleet.beat_schedule.entries import schedule_entries
    plan, _ = rotating_plan
    [entry] = [e for e in schedule_entries(plan) if e.kind == "key-rotation"]
    assert entry.task == "drfleet.rotate_keys" and entry.queue == "eu-central.control"
    assert entry.kwargs == {"region": "eu-central", "categories": ["content", "audit"]}
    assert entry.trigger.cron == "30 3 * * *"


def test_a_due_key_is_rotated_and_every_older_key_kept(rotating_plan):
    from drfleet.backup_format.keyring import load_keyring
    from drfleet.datapath.key_rotation import rotate_if_due
    from drfleet.datapath.verify import verify_backup

    plan, backup_id = rotating_plan
    ref = plan.keys["content"]
    first = load_keyring("content", file=ref.file).active.id
    soon = datetime.now(UTC) + timedelta(days=89)
    assert rotate_if_due(plan, "content", now=soon)["status"] == "not-due"
    assert load_keyring("content", file=ref.file).active.id == first
    later = datetime.now(UTC) + timedelta(days=91)
    done = rotate_if_due(plan, "content", now=later)
    assert done["status"] == "rotated" and done["old_key"] == first and done["kept_keys"] == [first]
    assert done["backups_on_older_keys"] == 1
    keyring = load_keyring("content", file=ref.file)
    assert keyring.active.id == done["active_key"] != first and first in keyring
    assert verify_backup(plan, f"site/{backup_id}", depth="full")["ok"] is True   # still readable


def test_the_task_audits_rotations_and_skips(rotating_plan, monkeypatch):
    from drfleet.datapath import key_rotation
    from drfleet.state import audit
    from drfleet.tasks.keys import rotate_keys

    assert rotating_plan
    real = key_rotation.rotate_if_due
    monkeypatch.setattr(key_rotation, "rotate_if_due",
                        lambda p, c: real(p, c, now=datetime.now(UTC) + timedelta(days=91)))
    result = rotate_keys.run(region="eu-central", categories=["content", "audit"])
    assert result["categories"]["content"]["status"] == "rotated"
    assert result["categories"]["audit"]["status"] == "skipped"
    records = {r["details"]["category"]: r for r in audit.entries(action="keys.rotate")}
    assert records["content"]["actor"] == "beat" and records["content"]["outcome"] == "succeeded"
    assert records["content"]["details"]["key_id"] == result["categories"]["content"]["active_key"]
    assert records["audit"]["outcome"] == "skipped" and "AUDIT_KEYRING" in records["audit"]["details"]["reason"]
    assert "material" not in json.dumps(records)


def test_an_old_key_is_retired_only_once_no_backup_needs_it(rotating_plan):
    from click.testing import CliRunner

    from drfleet.backup_format.keyring import load_keyring, rotate_keyring
    from drfleet.cli.main import main
    from drfleet.state import audit

    plan, backup_id = rotating_plan
    ref = plan.keys["content"]
    old = load_keyring("content", file=ref.file).active.id
    new = rotate_keyring(ref.file)
    plan_path = str(__import__("os").environ["DRFLEET_PLAN"])

    def cli(*args, input=None):
        return CliRunner().invoke(main, [*args, "--plan", plan_path], input=input)

    active = cli("keys", "retire", "content", new)
    assert active.exit_code == 1 and "is the active key" in active.output
    needed = cli("keys", "retire", "content", old)
    assert needed.exit_code == 1 and "1 backup copy of content still need" in needed.output
    assert f"site/{backup_id}" in needed.output and "keys rewrap" in needed.output
    assert old in load_keyring("content", file=ref.file)          # kept while a backup needs it
    assert cli("keys", "rewrap", "content", "--yes").exit_code == 0
    retired = cli("keys", "retire", "content", old, "--json")
    assert retired.exit_code == 0, retired.output
    assert json.loads(retired.stdout)["kept_keys"] == [new]
    assert load_keyring("content", file=ref.file).key_ids == [new]
    outcomes = [(r["outcome"], r["details"]["key_id"]) for r in audit.entries(action="keys.retire")]
    assert outcomes == [("refused", new), ("refused", old), ("succeeded", old)]
