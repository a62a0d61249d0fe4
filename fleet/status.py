"""What ``drfleet status`` reports: workers and their queues, queue depth, missed slots."""

from __future__ import annotations

from kombu.utils.url import maybe_sanitize_url

from drfleet.plan.models import Plan
from drfleet.state.missed import MISSED_STREAM
from drfleet.state.store import state_client
from drfleet.workers.queues import region_queues

# kombu's Redis transport keeps priorities in extra lists named queue + sep + priority
PRIORITY_SUFFIXES = ["", "\x06\x163", "\x06\x166", "\x06\x169"]


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

    broker = app.conf.broker_url
    client = state_client(broker)
    queues = [q for r in plan.region_names for q in region_queues(r)]
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    workers = {name: sorted(q["name"] for q in qs) for name, qs in replies.items()}
    return {"broker": maybe_sanitize_url(broker), "workers": workers,
            "queues": queue_depths(client, queues), "missed_slots": client.xlen(MISSED_STREAM)}
