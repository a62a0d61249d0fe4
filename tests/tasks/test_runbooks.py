"""Runbook runs on real Celery workers: a worker killed mid-step resumes without repeating
completed steps; a cancelled run stops between steps; a destructive step waits for approval
(by retrying with a countdown, not by sleeping)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from drfleet.runbooks.records import RunStore
from drfleet.runbooks.runner import CannotResume, approve_step, cancel_run
from tests.runbooks.world import RunbookWorld, steps_by_status

SLOW_RESTART = """\
services:
  site:
    region: eu-central
    host: web-1
    health: [sh, -c, "echo . >> {root}/health-log; test -f {root}/healthy"]
    restart: [sh, -c, "echo . >> {root}/restarts; sleep 4; touch {root}/healthy"]
"""


@pytest.fixture
def world(tmp_path, redis_url, celery_app):
    w = RunbookWorld(tmp_path, redis_url)
    yield w
    w.stop()


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_run_killed_mid_step_resumes_without_repeating_completed_steps(world, monkeypatch) -> None:
    from drfleet.tasks.runbooks import resume, service_failure

    world.write(services=SLOW_RESTART)
    fleet = world.start_fleet(monkeypatch, "eu-central")
    root = Path(world.web1.root)
    run_id = service_failure("site").apply_async().run_id
    world.wait_step(run_id, "restart", "running")
    from tests.fixtures.util import wait_for
    wait_for(lambda: lines(root / "restarts") == 1, timeout=30, what="the restart command to begin")

    fleet.procs[0].signal(signal.SIGKILL)       # the worker dies in the middle of the restart step
    fleet.procs[0].proc.wait(10)
    store = RunStore()
    assert steps_by_status(run_id)["check-health"] == "succeeded"
    assert steps_by_status(run_id)["restart"] == "running"
    with pytest.raises(CannotResume):           # its heartbeat is still fresh: maybe alive
        resume(run_id)

    fleet.worker("eu-central")
    from tests.fixtures.util import wait_for as wait
    wait(lambda: resume(run_id), timeout=20, interval=0.5, what="the dead step to look stale")
    run = world.wait_run(run_id)

    assert run.status == "succeeded", store.step_records(run_id)
    records = store.step_records(run_id)
    assert records["check-health"]["attempts"] == 1          # completed: never repeated
    assert records["restart"]["attempts"] == 2               # interrupted: run again
    assert lines(root / "restarts") == 2
    # health commands: check-health once, after the second restart once, verify once
    assert lines(root / "health-log") == 3
    assert steps_by_status(run_id) == {"check-health": "succeeded", "restart": "succeeded",
                                       "provision": "skipped", "push-config": "skipped",
                                       "verify": "succeeded"}
    assert run.rto_seconds is not None and run.rto_seconds > 0


def test_a_cancelled_run_stops_between_steps(world, monkeypatch) -> None:
    from drfleet.tasks.runbooks import service_failure

    world.write(services=SLOW_RESTART)
    world.start_fleet(monkeypatch, "eu-central")
    run_id = service_failure("site").apply_async().run_id
    world.wait_step(run_id, "restart", "running")

    cancel_run(run_id, by="ops")
    run = world.wait_run(run_id, ("cancelled",))

    statuses = steps_by_status(run_id)
    assert statuses["restart"] == "succeeded"               # the running step finished...
    assert statuses["provision"] == statuses["verify"] == "pending"  # ...nothing after it ran
    assert "before step provision" in run.error


DB_FAILOVER = """\
databases:
  app-db:
    standby: {env: APP_DB_STANDBY_URL}
"""


def test_a_destructive_step_waits_for_approval_and_a_cancel_ends_the_wait(world, monkeypatch, pg_cluster) -> None:
    from drfleet.tasks.runbooks import database_failure

    dsn = pg_cluster.create_database("rb_waits")
    datasets = ("app-db:\n  kind: postgres\n  region: eu-central\n  connection: {env: APP_DB_URL}\n"
                "  key: content\n  rpo: 1h\n  rto: 15m\n  policies:\n    - {name: daily, trigger: daily, keep: 7 days, copies: [home-region]}\n")
    world.env.update(APP_DB_URL=dsn, APP_DB_STANDBY_URL="postgresql://postgres@127.0.0.1:1/none")
    world.write(datasets=datasets, services="services: {}\n", extra_recovery=DB_FAILOVER)
    world.start_fleet(monkeypatch, "eu-central")

    run_id = database_failure("app-db", force=True).apply_async().run_id
    waiting = world.wait_step(run_id, "promote-standby", "waiting-approval")
    polled = world.wait_polls(run_id, "promote-standby", polls=3)  # several approval polls later...
    store = RunStore()
    assert polled["status"] == "waiting-approval"
    assert polled["attempts"] == waiting["attempts"] == 1
    assert store.get(run_id).status == "waiting-approval"

    cancel_run(run_id, by="ops")
    run = world.wait_run(run_id, ("cancelled",))
    assert steps_by_status(run_id)["promote-standby"] == "waiting-approval"
    assert run.status == "cancelled"
    with pytest.raises(Exception, match="needs no approval"):
        approve_step(run_id, "detect", by="ops", code=None)
