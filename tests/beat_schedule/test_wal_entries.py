"""A WAL-archived PostgreSQL policy schedules base backups and the archive-lag measurement."""

from pathlib import Path

from drfleet.beat_schedule.entries import beat_schedule, schedule_entries
from drfleet.plan.loader import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_wal_policies_get_daily_base_backups_and_a_lag_measurement_every_minute():
    plan = load_plan(EXAMPLES / "microservices.yaml")
    wal_datasets = sorted(name for name, ds in plan.datasets.items()
                          if ds.kind == "postgres" and any(p.mode == "wal" for p in ds.policies))
    assert wal_datasets, "the first seed plan archives WAL for its transaction databases"
    entries = {e.name: e for e in schedule_entries(plan)}
    sched = beat_schedule(plan)
    for name in wal_datasets:
        region = plan.datasets[name].region
        base = next(e for e in entries.values() if e.kind == "base-backup" and e.dataset == name)
        assert (base.task, base.queue, base.trigger.cron) == ("drfleet.base_backup", f"{region}.data", "0 1 * * *")
        lag = entries[f"wal-lag {name}"]
        assert (lag.task, lag.queue, lag.every_seconds) == ("drfleet.wal_lag", f"{region}.control", 60)
        assert sched[f"wal-lag {name}"]["kwargs"] == {"dataset": name, "region": region}
    assert not any(e.kind in ("base-backup", "wal-lag") and plan.datasets[e.dataset].kind != "postgres"
                   for e in entries.values())
