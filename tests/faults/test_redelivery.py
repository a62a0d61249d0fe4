"""The same backup message delivered twice, on real workers and a real broker: a
redelivery after its first delivery committed and died does not commit a second backup,
and a redelivery while the first delivery is still running (the broker's visibility
timeout passed) waits for it instead of running in parallel."""

import json
import uuid

import redis

from drfleet.state import audit, idempotency
from tests.faults import harness
from tests.fixtures.util import wait_for

SLOT = "2026-01-01T00:00:00+00:00"


def _kwargs(dataset="ds000"):
    return {"dataset": dataset, "policy": harness.POLICY, "region": "eu-central", "slot": SLOT}


def _manifests(plan_path):
    counts, torn = harness.committed_slots(harness.home_stores(plan_path))
    assert torn == 0
    return counts[("ds000", SLOT)]


def test_a_redelivery_after_a_commit_its_worker_did_not_record_commits_nothing_new(tmp_path, redis_url):
    """The window the kills can hit: manifest written, worker killed before the claim says
    "succeeded". The redelivery (same task id) finds the manifest its first delivery wrote."""
    from drfleet.datapath.backup import run_backup
    from drfleet.tasks.backup import backup
    from drfleet.workers.plan_context import current_plan

    plan = harness.write_fault_plan(tmp_path / "plan", datasets=1)
    env = harness.fault_env()
    fleet = harness.new_fleet(tmp_path, redis_url, plan, env)
    try:
        task_id = str(uuid.uuid4())
        job = idempotency.job_key("drfleet.backup", ("ds000", harness.POLICY, SLOT))
        assert idempotency.claim(job, task_id).granted  # the first delivery's claim...
        run_backup(current_plan(), "ds000", harness.POLICY, region="eu-central", slot=SLOT, task_id=task_id)
        # ...and its commit; then it died (no finish, no lease)
        fleet.worker("eu-central")
        result = backup.apply_async(kwargs=_kwargs(), task_id=task_id).get(timeout=60)
        assert result["status"] == "committed" and result["resumed"] is True
        assert _manifests(plan) == 1
        state = json.loads(redis.Redis.from_url(redis_url).get(job))
        assert state == {**state, "task_id": task_id, "state": "succeeded"}
    finally:
        fleet.stop()


def test_a_backup_outliving_the_visibility_timeout_is_not_run_twice_in_parallel(tmp_path, redis_url):
    """Worker A runs a slow backup (zstd level 19 on incompressible data); worker B has a
    4 s visibility timeout, so it hands A's unacknowledged message out again while A works.
    The second delivery finds A's live lease and waits; the slot is backed up once."""
    from drfleet.tasks.backup import backup

    plan = harness.write_fault_plan(tmp_path / "plan", datasets=1, payload_bytes=48 << 20)
    env = harness.fault_env(DRFLEET_DATA_SOFT_LIMIT="300", DRFLEET_DATA_HARD_LIMIT="330",
                            DRFLEET_CONTROL_SOFT_LIMIT="60", DRFLEET_CONTROL_HARD_LIMIT="70",
                            DRFLEET_VISIBILITY_TIMEOUT="600")
    fleet = harness.new_fleet(tmp_path, redis_url, plan, env)
    try:
        slow = fleet.worker("eu-central", env={"DRFLEET_ZSTD_LEVEL": "19"})
        result = backup.apply_async(kwargs=_kwargs())
        wait_for(lambda: "Task backup ds000" in slow.output() and "received" in slow.output(), timeout=60,
                 what="worker A to take the backup")
        impatient = fleet.worker("eu-central", env={
            "DRFLEET_VISIBILITY_TIMEOUT": "4", "DRFLEET_DATA_SOFT_LIMIT": "1", "DRFLEET_DATA_HARD_LIMIT": "2",
            "DRFLEET_CONTROL_SOFT_LIMIT": "1", "DRFLEET_CONTROL_HARD_LIMIT": "2"})
        outcome = result.get(timeout=300)
        assert outcome["status"] in ("committed", "already-succeeded")
        harness.drain(redis.Redis.from_url(redis_url))
        deliveries = sum(p.output().count(f"Task backup ds000 fast[{result.id}] received") for p in (slow, impatient))
        assert deliveries >= 2, "the message was never delivered a second time: the test proved nothing"
        starts = [r for r in audit.entries(action="drfleet.backup", limit=10_000) if r["outcome"] == "started"]
        assert len(starts) == 1, starts
        assert _manifests(plan) == 1
        assert sum(p.output().count("is still running elsewhere") for p in (slow, impatient)) >= 1
    finally:
        fleet.stop()


def test_a_backup_arriving_while_the_state_store_is_down_waits_or_is_requeued_and_runs_once(tmp_path, redis_url):
    """The broker is up but the state store (claims, leases, audit) is restarting: the task
    tries again each second, then puts its message back on the queue instead of failing it,
    and once the store is back the slot commits exactly once."""
    from drfleet.tasks.backup import backup
    from tests.fixtures.redis_server import RedisServer

    state = RedisServer().start()
    try:
        plan = harness.write_fault_plan(tmp_path / "plan", datasets=1)
        env = harness.fault_env(DRFLEET_STATE_WAIT_SECONDS="1")
        fleet = harness.new_fleet(tmp_path, redis_url, plan, env)
        try:
            worker = fleet.worker("eu-central", env={"DRFLEET_STATE_URL": state.url})
            state.stop()
            result = backup.apply_async(kwargs=_kwargs())
            wait_for(lambda: worker.output().count("message requeued") >= 2, timeout=60,
                     what="the backup to be requeued while the state store is down")
            assert "trying again in 1s" in worker.output()
            state.start()
            assert result.get(timeout=60)["status"] == "committed"
            assert _manifests(plan) == 1
            job = idempotency.job_key("drfleet.backup", ("ds000", harness.POLICY, SLOT))
            assert json.loads(state.client().get(job))["state"] == "succeeded"
        finally:
            fleet.stop()
    finally:
        state.cleanup()
