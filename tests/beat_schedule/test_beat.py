"""Beat against a real Redis and real workers: one execution per slot, missed slots recorded."""

import collections
import time

import pytest

from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy
from tests.fixtures.util import wait_for


def fast(*, src) -> str:
    return (dataset("site", policy("fast", "every 2 seconds", "100 versions"), source=src))


@pytest.fixture
def beat_fleet(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("x" * 1000)
    plan_path = write_plan(tmp_path / "plan", datasets=fast(src=src))
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    fleet = Fleet(tmp_path, redis_url, plan_path, env_extra={"DRFLEET_BEAT_LOCK_TIMEOUT": "6",
                                                             "DRFLEET_BEAT_MAX_INTERVAL": "1"})
    yield fleet
    fleet.stop()


def executions():
    from drfleet.state import audit
    runs = [r for r in audit.entries(action="drfleet.backup") if r["outcome"] == "succeeded"]
    return collections.Counter(r["details"]["slot"] for r in runs)


def committed_slots(plan_dir):
    import json
    return collections.Counter(json.loads(p.read_text())["slot"]
                               for p in (plan_dir / "stores" / "eu-central").rglob("manifests/*.json"))


def test_two_beats_give_exactly_one_execution_per_slot(beat_fleet, tmp_path):
    beat_fleet.worker("eu-central")
    beat_fleet.beat()
    beat_fleet.beat()
    wait_for(lambda: len(executions()) >= 4, timeout=60, what="four slots to run")
    counts = executions()
    assert counts and set(counts.values()) == {1}, counts
    from drfleet.state import audit
    assert {r["actor"] for r in audit.entries(action="drfleet.backup")} == {"beat"}
    assert set(committed_slots(tmp_path / "plan").values()) == {1}


def test_beats_without_the_lock_still_run_each_slot_once(beat_fleet, tmp_path):
    """The lock held twice (as in real incidents): both beats tick, the slot marker and the
    task's idempotency key keep each slot to one execution."""
    beat_fleet.worker("eu-central")
    beat_fleet.beat(env={"DRFLEET_BEAT_LOCK": "off"})
    beat_fleet.beat(env={"DRFLEET_BEAT_LOCK": "off"})
    wait_for(lambda: len(executions()) >= 4, timeout=60, what="four slots to run")
    assert set(executions().values()) == {1}, executions()
    assert set(committed_slots(tmp_path / "plan").values()) == {1}


def test_the_standby_beat_takes_over_when_the_active_one_dies(beat_fleet):
    beat_fleet.worker("eu-central")
    first = beat_fleet.beat()
    second = beat_fleet.beat()
    wait_for(lambda: len(executions()) >= 2, timeout=60, what="slots to run")
    active = first if "Acquired lock" in first.output() else second
    active.kill()  # SIGKILL: the lock is not released, the standby waits for it to expire
    before = len(executions())
    wait_for(lambda: len(executions()) >= before + 3, timeout=60, what="the standby to fire slots")
    assert set(executions().values()) == {1}


def test_slots_missed_while_beat_was_down_are_recorded(beat_fleet):
    from drfleet.state.missed import missed_slots

    beat_fleet.worker("eu-central")
    beat = beat_fleet.beat()
    wait_for(lambda: len(executions()) >= 2, timeout=60, what="slots to run")
    beat.stop()
    down_from = time.time()
    wait_for(lambda: time.time() - down_from > 9, timeout=20, interval=0.5, what="beat downtime")
    beat_fleet.beat()
    wait_for(lambda: len(list(missed_slots())) >= 2, timeout=60, what="missed slots to be recorded")
    missed = list(missed_slots())
    assert all(m["entry"] == "backup site fast" for m in missed)
    missed_times = {m["slot"] for m in missed}
    assert not missed_times & set(executions()), "a slot recorded as missed also ran"
    assert set(executions().values()) == {1}


def test_a_duplicate_message_for_the_same_slot_runs_once(beat_fleet, celery_app_for_beat):
    from drfleet.tasks.backup import backup

    beat_fleet.worker("eu-central")
    kwargs = {"dataset": "site", "policy": "fast", "region": "eu-central", "slot": "2026-01-01T00:00:00+00:00"}
    first, second = backup.apply_async(kwargs=kwargs), backup.apply_async(kwargs=kwargs)
    results = [first.get(timeout=60), second.get(timeout=60)]
    assert sorted(r["status"] for r in results) == ["committed", "duplicate"]
    assert executions()["2026-01-01T00:00:00+00:00"] == 1


@pytest.fixture
def celery_app_for_beat(beat_fleet):
    from drfleet.workers import app
    app.conf.broker_url = beat_fleet.broker_url
    app.conf.result_backend = beat_fleet.broker_url
    return app
