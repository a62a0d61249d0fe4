"""Break-glass: the region-failure and database-failure runbooks run from the CLI with the
fleet's Redis unreachable (any use of it would fail: the broker URL names a port nothing
listens on), the standby's promotion approved at the terminal, the journal kept locally and
in the stores, and the runs merged into the fleet's records and audit once Redis is back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.datapath.backup import run_backup
from drfleet.datapath.locations import store_for
from drfleet.runbooks.breakglass import STORE_PREFIX, JournalInvalid, merge_journals
from drfleet.runbooks.records import RunStore
from drfleet.runbooks.scenarios import build_steps
from drfleet.state import audit
from tests.runbooks.pg_pair import in_recovery
from tests.runbooks.test_region_failure import region_world

DEAD_REDIS = "redis://127.0.0.1:9/0"  # the discard port: nothing answers there


def _no_redis(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DRFLEET_BROKER_URL", DEAD_REDIS)
    for name in ("DRFLEET_STATE_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRFLEET_HOME", str(tmp_path / "laptop-home"))
    monkeypatch.setenv("DRFLEET_OPERATOR", "ann")


def _break_glass(approvals: list[str], *args: str):
    args = args or ("region-failure", "--region", "eu-central")
    return CliRunner().invoke(main, ["break-glass", "run", *args, "--json"],
                              input="".join(f"{a}\n" for a in approvals))


def journal_steps(journal: dict) -> list[dict]:
    return [json.loads(v) for v in journal["steps"].values()]


def _result(run) -> dict:
    return json.loads(run.output[run.output.index("{\n"):])


@pytest.fixture
def region_lost(world, s3_server, tmp_path, monkeypatch):
    plan, r53, zone_id, zone = region_world(world, s3_server, tmp_path, monkeypatch)
    run_backup(plan, "uploads", "daily", region="eu-central", location="us-east-store")
    world.cloud.power_off(world.web1.id)
    destructive = [s.name for s in build_steps(plan, "region-failure", region="eu-central") if s.destructive]
    return plan, destructive


def test_region_failure_runs_with_no_redis_and_is_merged_into_the_audit_later(region_lost, world, tmp_path,
                                                                                monkeypatch):
    plan, destructive = region_lost
    _no_redis(monkeypatch, tmp_path)

    run = _break_glass(destructive)

    assert run.exit_code == 0, run.output
    assert run.output.count("is destructive.") == len(destructive)
    result = _result(run)
    report = result["report"]
    assert report["result"] == "succeeded" and report["started_by"] == "breakglass:ann"
    assert (tmp_path / "restored" / "uploads" / "a.txt").read_text() == "upload\n"
    assert Path(result["journal"]).stat().st_mode & 0o077 == 0
    assert set(result["stored"]) == set(plan.storage)
    journal = json.loads(store_for(plan, "us-east-store").get_bytes(f"{STORE_PREFIX}{report['run_id']}.json"))
    assert {e["action"] for e in journal["audit"]} >= {"runbook.start"}
    assert [s["status"] for s in journal_steps(journal)] == ["succeeded"] * len(report["steps"])

    fleet = redis.Redis.from_url(world.redis_url)
    assert RunStore(fleet).list_runs() == []  # nothing reached the fleet's Redis during the run
    monkeypatch.setenv("DRFLEET_BROKER_URL", world.redis_url)
    merged = CliRunner().invoke(main, ["break-glass", "merge"])
    again = CliRunner().invoke(main, ["break-glass", "merge"])

    assert merged.exit_code == 0, merged.output
    assert f"merged {report['run_id']}" in merged.output and "nothing to merge" in again.output
    [fleet_run] = RunStore(fleet).list_runs()
    assert (fleet_run.run_id, fleet_run.status) == (report["run_id"], "succeeded")
    started = list(audit.entries(action="runbook.start", client=fleet))
    assert [(e["actor"], e["outcome"], e["details"]["breakglass"]) for e in started] == \
        [("ann", "breakglass", report["run_id"])]
    assert [e["outcome"] for e in audit.entries(action="runbook.breakglass-merge", client=fleet)] == ["merged"]


def test_a_damaged_journal_is_refused_and_the_others_are_merged(region_lost, world, tmp_path, monkeypatch):
    plan, destructive = region_lost
    _no_redis(monkeypatch, tmp_path)
    run = _break_glass(destructive)
    run_id = _result(run)["report"]["run_id"]
    store_for(plan, "us-east-store").put_bytes(f"{STORE_PREFIX}forged.json", b'{"format": "something-else"}')
    monkeypatch.setenv("DRFLEET_BROKER_URL", world.redis_url)
    fleet = redis.Redis.from_url(world.redis_url)

    merged = merge_journals(plan, by="bob", client=fleet)

    assert [m["run_id"] for m in merged] == [run_id]
    with pytest.raises(JournalInvalid) as raised:
        merge_journals(plan, by="bob", client=fleet)  # only the forged one is left: refused, named
    assert "forged.json" in raised.value.facts["source"]


def test_database_failure_promotes_the_standby_after_a_terminal_approval_with_no_redis(world, tmp_path, monkeypatch,
                                                                                    s3_server):
    from tests.runbooks.test_database_failure import failing_database

    with failing_database(world, monkeypatch, s3_server) as db:
        monkeypatch.setenv("DRFLEET_PLAN", str(world.plan_path))
        for k, v in world.env.items():
            monkeypatch.setenv(k, v)
        db.primary.stop()                                       # the primary fails, and Redis with it
        _no_redis(monkeypatch, tmp_path)

        refused = _break_glass(["no"], "database-failure", "--dataset", "app-db")
        assert refused.exit_code == 1
        steps = {s["name"]: s for s in _result(refused)["report"]["steps"]}
        assert steps["promote-standby"]["status"] == "failed"
        assert "not approved by ann" in steps["promote-standby"]["error"]
        assert in_recovery(db.standby.dsn()), "nothing may be promoted without the approval"

        run = _break_glass(["promote-standby"], "database-failure", "--dataset", "app-db")

        assert run.exit_code == 0, run.output
        assert "type promote-standby to approve it as ann" in run.output
        report = _result(run)["report"]
        assert report["result"] == "succeeded", [(s["name"], s["status"], s["error"]) for s in report["steps"]]
        assert not in_recovery(db.standby.dsn())
        monkeypatch.setenv("DRFLEET_BROKER_URL", world.redis_url)
        fleet = redis.Redis.from_url(world.redis_url)
        merged = merge_journals(plan_of(world), by="bob", client=fleet)
        assert sorted(m["run_id"] for m in merged) == sorted([_result(refused)["report"]["run_id"], report["run_id"]])
        [approval] = audit.entries(action="runbook.approve", client=fleet)
        assert (approval["actor"], approval["details"]["step"], approval["details"]["breakglass"]) == \
            ("ann", "promote-standby", report["run_id"])


def plan_of(world):
    from drfleet.plan.loader import load_plan
    return load_plan(world.plan_path)
