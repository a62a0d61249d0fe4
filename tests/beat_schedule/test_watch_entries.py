"""Watch entries (continuous and on-change policies of local file trees) and the daily
prune entry of every region, as the plan turns into beat's schedule."""

from pathlib import Path

import pytest
from celery.schedules import crontab, schedule

from drfleet.beat_schedule.entries import beat_schedule, schedule_entries
from drfleet.plan.loader import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def microservices():
    return load_plan(EXAMPLES / "microservices.yaml")


def by_kind(plan, kind):
    return {e.name: e for e in schedule_entries(plan) if e.kind == kind}


def test_file_trees_with_continuous_or_on_change_policies_get_a_watch_on_the_control_lane(microservices):
    watches = by_kind(microservices, "watch")
    assert set(watches) == {"watch configuration on-change", "watch user-uploads realtime"}
    entry = watches["watch configuration on-change"]
    assert (entry.task, entry.region, entry.queue, entry.every_seconds) == (
        "drfleet.watch", "eu-central", "eu-central.control", 60)
    assert entry.kwargs == {"dataset": "configuration", "policy": "on-change", "region": "eu-central"}
    uploads = watches["watch user-uploads realtime"]  # a tree on web-eu-1, surveyed over SSH
    assert (uploads.queue, uploads.every_seconds) == ("eu-central.control", 15)


def test_database_wal_policies_get_no_watch(microservices):
    watched = {e.dataset for e in by_kind(microservices, "watch").values()}
    assert "auth-db" not in watched  # continuous, but postgres WAL: the WAL archiver's


def test_continuous_watches_run_every_15_seconds_unless_overridden(monkeypatch):
    plan = load_plan(EXAMPLES / "plugspace.yaml")
    intervals = {e.every_seconds for e in by_kind(plan, "watch").values()}
    assert intervals == {60}  # plugspace watches only on-change trees
    from drfleet.beat_schedule.entries import watch_interval
    assert (watch_interval("continuous"), watch_interval("on-change")) == (15, 60)
    monkeypatch.setenv("DRFLEET_WATCH_CONTINUOUS_SECONDS", "2")
    assert watch_interval("continuous") == 2


def test_beat_fires_watches_on_an_interval_that_expires_stale_messages(microservices):
    sched = beat_schedule(microservices)
    watch = sched["watch configuration on-change"]
    assert watch["task"] == "drfleet.watch" and isinstance(watch["schedule"], schedule)
    assert watch["schedule"].run_every.total_seconds() == 60
    assert watch["options"]["queue"] == "eu-central.control" and watch["options"]["expires"] == 60
    assert "backup configuration on-change" not in sched  # the watch sends that backup


def test_the_listing_json_shows_how_often_a_watch_runs(microservices):
    row = by_kind(microservices, "watch")["watch configuration on-change"].to_json()
    assert (row["kind"], row["trigger"], row["every_seconds"]) == ("watch", "on-change", 60)


def test_every_region_prunes_daily_at_four_utc_on_its_control_lane(microservices):
    prunes = by_kind(microservices, "prune")
    assert set(prunes) == {f"prune {r}" for r in microservices.region_names}
    sched = beat_schedule(microservices)
    for region in microservices.region_names:
        entry = prunes[f"prune {region}"]
        assert (entry.task, entry.queue, entry.kwargs) == ("drfleet.prune", f"{region}.control", {"region": region})
        assert entry.trigger.cron == "0 4 * * *"
        fired = sched[f"prune {region}"]
        assert isinstance(fired["schedule"], crontab) and fired["options"]["queue"] == f"{region}.control"


def test_prunes_get_a_slot_from_the_scheduler_and_watches_do_not(microservices):
    """The scheduler injects ``slot`` for clock triggers only; watches deduplicate through
    the watch state instead, so missed watch ticks are not recorded as missed slots."""
    clocked = {e.name for e in schedule_entries(microservices) if e.trigger.scheduled}
    assert {f"prune {r}" for r in microservices.region_names} <= clocked
    assert not {name for name in clocked if name.startswith("watch ")}
