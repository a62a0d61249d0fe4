"""The reconcile pass's rule for stranded messages, on a real Redis laid out as kombu lays
out reserved messages (``unacked`` hash, ``unacked_index`` zset): a message whose worker is
alive and says it runs it stays; one past its expiry goes back to its queue whatever its
running record says (a periodic pass cut by a connection loss could not clear that record
while Redis was away), where the worker discards and acknowledges it."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import redis

from drfleet.state import inflight
from drfleet.workers.celery_app import app
from drfleet.workers.reconcile import reconcile_region
from tests.fixtures.fleet import write_plan


def _reserve(client: redis.Redis, tag: str, task_id: str, *, expires: datetime | None, age: float) -> None:
    headers = {"id": task_id, "task": "drfleet.reconcile"}
    if expires is not None:
        headers["expires"] = expires.isoformat()
    message = {"headers": headers, "body": "", "properties": {"delivery_tag": tag}}
    client.hset("unacked", tag, json.dumps([message, "", "eu-central.control"]))
    client.zadd("unacked_index", {tag: time.time() - age})


def test_a_live_workers_message_stays_and_an_expired_one_goes_back(redis_url, tmp_path, monkeypatch):
    from drfleet.plan.loader import load_plan

    monkeypatch.setenv("DRFLEET_RECONCILE_GRACE_SECONDS", "1")
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)  # the app's task registry reads the fleet's settings
    client = redis.Redis.from_url(redis_url)
    plan = load_plan(write_plan(tmp_path / "plan"))
    now = datetime.now(timezone.utc)
    for task_id, tag, expires in (("live", "t-live", now + timedelta(minutes=5)),
                                  ("expired", "t-old", now - timedelta(seconds=30))):
        _reserve(client, tag, task_id, expires=expires, age=60)
        inflight.mark_running(task_id, "w1@test", client=client)  # its record says a live worker runs it
    inflight.heartbeat("w1@test", client=client)

    report = reconcile_region(app, plan, "eu-central", broker=client, state=client)

    assert report.restored == ["expired"]
    assert client.hkeys("unacked") == [b"t-live"]
    [queued] = client.lrange("eu-central.control", 0, -1)
    assert json.loads(queued)["headers"]["id"] == "expired"
