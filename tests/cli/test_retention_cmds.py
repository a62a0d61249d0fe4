"""`drfleet prune`, `hold`, `release` and `holds` against real stores and a real Redis."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from drfleet.backup_format.keyring import create_keyring
from drfleet.cli.main import main
from drfleet.datapath.locations import store_for
from drfleet.datapath.prune import prune_location
from drfleet.state import audit
from tests.datapath.retention_builders import committed, plan_with, put_backup

POLICIES = "- {name: daily, trigger: daily, keep: 3 days, copies: [home-region]}\n"


@pytest.fixture
def stocked(tmp_path, redis_url, monkeypatch):
    """A plan whose home store holds one backup 10 days old and one from today."""
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    plan = plan_with(tmp_path / "plan", POLICIES)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700, exist_ok=True)
    create_keyring(plan.keys["content"].file, "content")  # hold markers are signed with it
    home = store_for(plan, "eu-central-store")
    now = datetime.now(UTC)
    old = put_backup([home], "site", "daily", now - timedelta(days=10))
    new = put_backup([home], "site", "daily", now)
    return tmp_path / "plan" / "plan.yaml", home, old, new


def run(plan_path, *args):
    return CliRunner().invoke(main, [*args, "--plan", str(plan_path)])


def test_dry_run_says_what_would_go_and_why(stocked):
    plan_path, home, old, new = stocked
    out = run(plan_path, "prune", "--dry-run")
    assert out.exit_code == 0, out.output + out.stderr
    assert f"delete site/{old} daily        policy daily: older than 3 days (10.0 days old)" in out.output
    assert f"keep   site/{new}" in out.output
    assert "eu-central-store: would delete 1, kept 1" in out.output
    doc = json.loads(run(plan_path, "prune", "--dry-run", "--json").stdout)
    [home_report] = [r for r in doc["locations"] if r["location"] == "eu-central-store"]
    assert home_report["deleted"] == [f"site/{old}"]
    assert committed(home) == {old, new}


def test_prune_deletes_and_the_audit_log_names_the_cli(stocked):
    plan_path, home, old, new = stocked
    out = run(plan_path, "prune", "--dataset", "site", "--yes")
    assert out.exit_code == 0, out.output + out.stderr
    assert f"gone   site/{old}" in out.output
    assert committed(home) == {new}
    [record] = audit.entries(action="prune.delete")
    assert (record["actor"], record["details"]["backup_id"]) == ("cli", old)


def test_prune_without_yes_shows_what_would_go_and_deletes_nothing_unless_confirmed(stocked):
    plan_path, home, old, new = stocked
    declined = CliRunner().invoke(main, ["prune", "--plan", str(plan_path)], input="n\n")
    assert declined.exit_code == 1
    assert f"delete site/{old}" in declined.output and "delete these 1 backups/leftovers?" in declined.stderr
    assert committed(home) == {old, new} and not list(audit.entries(action="prune.delete"))
    confirmed = CliRunner().invoke(main, ["prune", "--plan", str(plan_path)], input="y\n")
    assert confirmed.exit_code == 0, confirmed.output + confirmed.stderr
    assert committed(home) == {new}


def test_hold_keeps_a_backup_through_prune_until_released(stocked):
    plan_path, home, old, new = stocked
    held = run(plan_path, "hold", f"site/{old}", "--reason", "case 17", "--by", "alice")
    assert held.exit_code == 0, held.output + held.stderr
    assert f"site/{old} is on hold in eu-central-store (by alice: case 17)" in held.output
    [listed] = [json.loads(line) for line in run(plan_path, "holds", "--json").stdout.splitlines()]
    assert (listed["backup_id"], listed["by"], listed["reason"]) == (old, "alice", "case 17")
    assert run(plan_path, "prune", "--yes").exit_code == 0
    assert committed(home) == {old, new}
    released = run(plan_path, "release", old)
    assert released.output.strip() == f"released the hold on {old} in eu-central-store"
    assert run(plan_path, "release", old).output.strip() == f"{old} was not on hold"
    run(plan_path, "prune", "--yes")
    assert committed(home) == {new}
    assert [r["action"] for r in audit.entries() if r["action"] in ("hold", "release")] == ["hold", "release"]


def test_bad_names_are_clear_errors(stocked):
    plan_path, home, old, new = stocked
    unknown = run(plan_path, "prune", "--dataset", "nope")
    assert unknown.exit_code == 1 and "known: site" in unknown.stderr
    bad_location = run(plan_path, "prune", "--location", "nowhere")
    assert bad_location.exit_code == 2 and "unknown location 'nowhere'" in bad_location.stderr
    missing = run(plan_path, "hold", "20200101T000000Z-00000000")
    assert missing.exit_code == 1 and "no manifest for backup 20200101T000000Z-00000000" in missing.stderr


def test_a_prune_already_running_is_named_not_joined(stocked, redis_url):
    plan_path, home, old, new = stocked
    from drfleet.plan.loader import load_plan
    plan = load_plan(plan_path)
    holding, release = threading.Event(), threading.Event()
    first = threading.Thread(target=prune_location, args=(plan, "eu-central-store"), kwargs={
        "dry_run": False, "on_decided": lambda *a: (holding.set(), release.wait(30))})
    first.start()
    try:
        assert holding.wait(30)
        out = run(plan_path, "prune", "--location", "eu-central-store", "--yes")
        assert out.exit_code == 1
        assert "location eu-central-store is being pruned by another process" in out.stderr
        assert "holder:" in out.stderr and "what to do:" in out.stderr
    finally:
        release.set()
        first.join(30)


def test_prune_without_redis_is_a_clear_error(stocked, monkeypatch):
    plan_path, home, old, new = stocked
    from tests.fixtures.util import free_port
    monkeypatch.setenv("DRFLEET_STATE_URL", f"redis://127.0.0.1:{free_port()}/0")
    out = run(plan_path, "prune", "--yes")
    assert out.exit_code == 1 and "the fleet state (Redis) is unreachable" in out.stderr
    assert "Traceback" not in out.stderr and committed(home) == {old, new}
