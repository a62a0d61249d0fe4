"""What ``drfleet status`` reports: workers and their queues, queue depth, missed slots, and
work that is stuck: messages reserved by a worker that is gone, and work sent but neither
queued, reserved nor running (what ``workers.reconcile`` will send again), with their ages."""

from __future__ import annotations

import time

from drfleet.plan.models import Plan
from drfleet.state import idempotency, inflight
from drfleet.state.fleet_redis import fleet_redis
from drfleet.state.missed import MISSED_STREAM
from drfleet.state.store import broker_client, state_client
from drfleet.workers.queues import region_queues
from drfleet.workers.reconcile import PRIORITY_SUFFIXES, queued_task_ids, reserved_messages, worker_is_gone


def queue_depths(client, queues: list[str]) -> dict[str, int]:
    pipe = client.pipeline()
    for q in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(q + suffix)
    counts = pipe.execute()
    n = len(PRIORITY_SUFFIXES)
    return {q: sum(counts[i * n:(i + 1) * n]) for i, q in enumerate(queues)}


def fleet_status(plan: Plan, timeout: float = 2.0) -> dict:
    from drfleet.workers.celery_app import app

    target = fleet_redis()
    client = broker_client(target)
    queues = [q for r in plan.region_names for q in region_queues(r)]
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    workers = {name: sorted(q["name"] for q in qs) for name, qs in replies.items()}
    state = state_client()
    return {"broker": target.describe, "workers": workers, "live_workers": inflight.live_workers(client=state),
            "queues": queue_depths(client, queues), "missed_slots": state.xlen(MISSED_STREAM),
            **stuck_work(client, state, queues)}


def _job_running(entry: inflight.Inflight, state) -> bool:
    from drfleet.workers.celery_app import app
    task = app.tasks.get(entry.task)
    job = task.job_of(entry.kwargs) if task is not None else None
    return job is not None and idempotency.Lease(job, client=state).holder() is not None


def stuck_work(broker, state, queues: list[str], now: float | None = None) -> dict:
    """``reserved``: every reserved message with its age and whether its worker is alive;
    ``unaccounted``: in-flight work older than a minute that is neither queued, reserved nor
    running, with its age and how often it was sent again."""
    now = now or time.time()
    reserved = reserved_messages(broker, queues)
    out = {"reserved": [{"task": m.task, "task_id": m.task_id, "queue": m.routing_key,
                         "age_seconds": round(now - m.reserved_at, 1),
                         "worker": inflight.running_on(m.task_id, client=state) if m.task_id else None,
                         "worker_alive": not worker_is_gone(m.task_id, state)} for m in reserved],
           "unaccounted": []}
    present = queued_task_ids(broker, queues) | {m.task_id for m in reserved}
    for entry in inflight.entries(client=state):
        if entry.task_id in present or now - entry.sent_at < 60 or _job_running(entry, state):
            continue
        out["unaccounted"].append({"task": entry.task, "task_id": entry.task_id, "region": entry.region,
                                   "age_seconds": round(now - entry.sent_at, 1), "resends": entry.resends,
                                   **{k: v for k, v in entry.kwargs.items() if k in ("dataset", "policy", "slot")}})
    return out
