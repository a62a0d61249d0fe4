import json
from pathlib import Path

from click.testing import CliRunner

from drfleet.beat_schedule.entries import beat_schedule, schedule_entries
from drfleet.cli.main import main
from drfleet.plan.loader import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_one_entry_per_dataset_policy_region_with_the_documented_fields():
    result = CliRunner().invoke(main, ["schedule", "--plan", str(EXAMPLES / "microservices.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    backups = [r for r in rows if r["kind"] == "backup"]
    assert len(backups) == 18
    auth_hourly = next(r for r in backups if (r["dataset"], r["policy"]) == ("auth-db", "hourly"))
    assert {k: auth_hourly[k] for k in ("region", "queue", "trigger", "cron", "keep_seconds", "keep_versions", "copies")} == {
        "region": "eu-central", "queue": "eu-central.data", "trigger": "cron", "cron": "0 * * * *",
        "keep_seconds": 86400, "keep_versions": None, "copies": ["primary-region"]}
    analytics = next(r for r in backups if r["dataset"] == "analytics-db")
    assert (analytics["region"], analytics["queue"]) == ("us-east", "us-east.data")
    wallets = next(r for r in backups if r["dataset"] == "wallets")
    assert (wallets["keep_seconds"], wallets["keep_versions"]) == (None, None)
    kinds = {r["trigger"] for r in backups}
    assert kinds == {"cron", "continuous", "on-change", "on-event"}
    assert [r["kind"] for r in rows if r["kind"] not in ("backup", "watch", "prune", "base-backup", "wal-lag", "copies-check",
                                                         "reconcile", "health", "db-check", "deep-verify", "queue-depth",
                                                         "wal-copy")
            ] == ["drill"] * 4 + ["key-rotation", "verify-cold"]
    # WAL goes wherever the WAL policy's copies go, on the home region's data lane
    [wal_copy] = [r for r in rows if r["kind"] == "wal-copy"]
    assert (wal_copy["dataset"], wal_copy["queue"]) == ("auth-db", "eu-central.data")
    reconciles = [r for r in rows if r["kind"] == "reconcile"]
    assert sorted(r["queue"] for r in reconciles) == sorted(f"{region}.control" for region in
                                                            load_plan(EXAMPLES / "microservices.yaml").region_names)


def test_beat_fires_only_clock_triggers():
    plan = load_plan(EXAMPLES / "microservices.yaml")
    sched = beat_schedule(plan)
    assert "backup auth-db hourly" in sched and "backup user-uploads realtime" not in sched
    assert sched["backup auth-db hourly"]["options"]["queue"] == "eu-central.data"
    assert sched["backup auth-db hourly"]["kwargs"] == {"dataset": "auth-db", "policy": "hourly", "region": "eu-central"}
    assert sched["reconcile us-east"]["options"]["expires"] == sched["reconcile us-east"]["schedule"].run_every.total_seconds()


def test_the_table_view_lists_every_entry():
    result = CliRunner().invoke(main, ["schedule", "--plan", str(EXAMPLES / "plugspace.yaml")])
    assert result.exit_code == 0
    plan = load_plan(EXAMPLES / "plugspace.yaml")
    for entry in schedule_entries(plan):
        assert entry.name in result.output
