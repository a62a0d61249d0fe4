"""Region pinning with real worker processes on a real Redis broker."""

import json
import uuid

import pytest

from tests.fixtures.util import wait_for


def probes(celery_app, tag):
    from drfleet.state.store import key, state_client
    return [json.loads(x) for x in state_client().lrange(key("probe", tag), 0, -1)]


def test_each_region_runs_only_its_own_tasks(fleet, celery_app):
    from drfleet.tasks.probe import probe

    eu = fleet.worker("eu-central")
    us = fleet.worker("us-east")
    results = [probe.apply_async(kwargs={"region": region, "tag": f"t{i}"})
               for i, region in enumerate(["eu-central", "us-east"] * 4)]
    seen = [r.get(timeout=30) for r in results]
    for i, run in enumerate(seen):
        assert run["worker_region"] == run["message_region"]
        assert run["queue"] == f"{run['message_region']}.control"
    hosts = {run["message_region"]: {r["hostname"] for r in seen if r["message_region"] == run["message_region"]}
             for run in seen}
    assert hosts == {"eu-central": {"eu-central-all-0@test"}, "us-east": {"us-east-all-1@test"}}
    assert eu.proc.poll() is None and us.proc.poll() is None


def test_a_task_pushed_onto_another_regions_queue_is_rejected_not_run(fleet, celery_app):
    from drfleet.tasks.probe import probe

    us = fleet.worker("us-east")
    tag = uuid.uuid4().hex
    wrong = probe.apply_async(kwargs={"region": "eu-central", "tag": tag},
                              queue="us-east.control", routing_key="us-east.control")
    # a correct task behind it on the same queue proves the worker got past the wrong one
    probe.apply_async(kwargs={"region": "us-east", "tag": tag}).get(timeout=30)
    wait_for(lambda: f"id={wrong.id}" in us.output(), timeout=20, what="the rejection to be logged")
    assert [p["message_region"] for p in probes(celery_app, tag)] == ["us-east"]
    assert f"rejected task drfleet.probe id={wrong.id}" in us.output()
    assert "is for region 'eu-central'" in us.output() or "for region 'eu-central'" in us.output()


def test_a_lane_worker_consumes_only_its_lane(fleet, celery_app):
    fleet.worker("eu-central", lane="data")
    replies = celery_app.control.inspect(timeout=5).active_queues()
    queues = {name: sorted(q["name"] for q in qs) for name, qs in replies.items()}
    assert list(queues.values()) == [["eu-central.data"]]


def test_a_worker_without_region_refuses_to_start(fleet):
    from tests.fixtures.fleet import CeleryProcess
    proc = CeleryProcess(["worker", "-c", "1", "-n", "noregion@test"], fleet.env,
                         fleet.tmp / "noregion.log", ready_text="")
    proc.start()
    proc.proc.wait(60)
    assert proc.proc.returncode != 0
    assert "this worker has no region" in proc.output()
    assert "--region NAME" in proc.output()


def test_sending_without_a_region_is_an_error(celery_app):
    with pytest.raises(ValueError, match="without region"):
        celery_app.send_task("drfleet.probe", kwargs={"tag": "x"})
