"""Copies on real worker processes: a committed backup is copied to every location its
policy names and each copy verified; a copy message that would take a region-only dataset
out of its region writes nothing; a duplicate copy message is skipped; a destination that
is down is retried until it is back."""

import pytest
from celery.result import AsyncResult

from tests.datapath.copy_plans import make_copy_plan, manifests_at, object_file, store_files
from tests.fixtures.s3_server import TcpRelay
from tests.fixtures.util import wait_for

TIMEOUT = 120


@pytest.fixture
def relay(s3_server):
    relay = TcpRelay(s3_server.port)  # not listening (connection refused) until a test restores it
    yield relay
    relay.cut()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    env = {"T_S3_KEY": s3_server.access_key_id, "T_S3_SECRET": s3_server.secret_access_key}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(s3_server):
    return s3_server.new_bucket()


@pytest.fixture
def fleet_plan(tmp_path, s3_server, relay, bucket, s3_env):
    """The copy plan, plus ``remote``: an S3 location behind a relay the test controls."""
    storage = (f"remote: {{kind: s3, offsite: true, default: false, bucket: {bucket}, "
               f"endpoint_url: '{relay.endpoint_url}', s3_region: {s3_server.region}, "
               f"access_key: {{env: T_S3_KEY}}, secret_key: {{env: T_S3_SECRET}}}}\n")
    make_copy_plan(tmp_path / "plan", storage=storage)
    return tmp_path / "plan" / "plan.yaml"


@pytest.fixture
def worker(fleet, s3_env):
    return fleet.worker("eu-central", env=s3_env)


def root_of(fleet_plan):
    return fleet_plan.parent


def test_a_committed_backup_is_copied_to_every_policy_location_and_each_copy_verified(worker, fleet_plan):
    from drfleet.state.verifications import results
    from drfleet.tasks.backup import backup

    summary = backup.apply_async(kwargs={"dataset": "site", "policy": "hourly", "region": "eu-central",
                                         "slot": "s1"}).get(timeout=TIMEOUT)
    followups = summary["followups"]
    assert sorted(followups["copies"]) == ["us-east-store", "vault"]
    copies = {loc: AsyncResult(task_id).get(timeout=TIMEOUT) for loc, task_id in followups["copies"].items()}
    assert {loc: c["status"] for loc, c in copies.items()} == {"us-east-store": "copied", "vault": "copied"}
    assert copies["vault"]["key_category"] == "offsite"
    root = root_of(fleet_plan)
    for location in ("eu-central-store", "us-east-store", "vault"):
        assert manifests_at(root, location) == [summary["backup_id"]]

    def verified():
        done = {r.location: r for r in results("site") if r.backup_id == summary["backup_id"]}
        return done if len(done) == 3 else None

    done = wait_for(verified, timeout=TIMEOUT, what="a verify of the backup and of each copy")
    assert all(r.ok and r.depth == "quick" for r in done.values())


def test_a_copy_message_that_would_leave_the_region_writes_nothing(worker, fleet_plan):
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan
    from drfleet.tasks.copy import copy

    plan = load_plan(fleet_plan)
    backup_id = run_backup(plan, "secret", "hourly", region="eu-central")["backup_id"]
    sent = copy.apply_async(kwargs={"backup_id": f"secret/{backup_id}", "location": "us-east-store",
                                    "region": "eu-central"})
    with pytest.raises(Exception) as info:
        sent.get(timeout=TIMEOUT)
    assert "region-only" in str(info.value) and "us-east-store" in str(info.value)
    assert store_files(root_of(fleet_plan), "us-east-store") == []


def test_a_second_copy_message_for_the_same_backup_and_location_is_skipped(worker, fleet_plan):
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan
    from drfleet.tasks.copy import copy

    plan = load_plan(fleet_plan)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    kwargs = {"backup_id": f"site/{backup_id}", "location": "us-east-store", "region": "eu-central"}
    first = copy.apply_async(kwargs=kwargs).get(timeout=TIMEOUT)
    second = copy.apply_async(kwargs=kwargs).get(timeout=TIMEOUT)
    assert first["status"] == "copied" and second["status"] == "duplicate"


def test_a_copy_to_a_store_that_is_down_is_retried_until_it_is_back(worker, fleet_plan, relay, bucket, s3_server):
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan
    from drfleet.tasks.copy import copy

    plan = load_plan(fleet_plan)
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    sent = copy.apply_async(kwargs={"backup_id": f"site/{backup_id}", "location": "remote",
                                    "region": "eu-central"})
    wait_for(lambda: "retry: Retry in" in worker.output(), timeout=TIMEOUT, what="the copy to be retried")
    client = s3_server.client()
    assert not any("/manifests/" in o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    relay.restore()
    assert sent.get(timeout=TIMEOUT)["status"] == "copied"
    assert f"datasets/site/manifests/{backup_id}.json" in \
        [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]


def test_the_weekly_copies_check_on_a_worker_reseeds_a_lost_copy(worker, fleet_plan, relay):
    from drfleet.beat_schedule.entries import schedule_entries
    from drfleet.datapath.backup import run_backup
    from drfleet.datapath.copy import copy_backup
    from drfleet.plan.loader import load_plan
    from drfleet.tasks.copy import copies_check

    plan = load_plan(fleet_plan)
    entry = next(e for e in schedule_entries(plan) if e.kind == "copies-check")
    assert (entry.task, entry.queue, entry.trigger.cron) == ("drfleet.copies_check", "eu-central.data", "0 5 * * 0")
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]
    for location in ("us-east-store", "vault"):
        copy_backup(plan, f"site/{backup_id}", location, region="eu-central")
    root = root_of(fleet_plan)
    object_file(root, "us-east-store", backup_id).unlink()  # a copy lost its data
    relay.restore()
    summary = copies_check.apply_async(kwargs={"region": "eu-central", "slot": "w1"}).get(timeout=TIMEOUT)
    assert summary["repaired"] == [f"site/{backup_id}@us-east-store"] and summary["healthy"]
    assert object_file(root, "us-east-store", backup_id).exists()
    for location in ("eu-central-store", "us-east-store", "vault"):  # no good copy left anywhere
        object_file(root, location, backup_id).unlink()
    with pytest.raises(Exception) as info:
        copies_check.apply_async(kwargs={"region": "eu-central", "slot": "w2"}).get(timeout=TIMEOUT)
    assert type(info.value).__name__ == "CopiesStillBad" and f"site/{backup_id}" in str(info.value)
