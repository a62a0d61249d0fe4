"""Diagnostic tasks: ``noop`` (the fleet-overhead benchmark's unit of work) and ``probe``
(records which worker ran it; ``drfleet ping`` and the routing tests use it)."""

from __future__ import annotations

import json
import os
import socket

from drfleet import settings
from drfleet.state.store import key, state_client
from drfleet.workers.celery_app import app


@app.task(name="drfleet.noop", label="noop", idempotent_on=("tag",))
def noop(region: str, tag: str | None = None) -> str:
    return "ok"


@app.task(bind=True, name="drfleet.probe", label="probe")
def probe(self, region: str, tag: str) -> dict:
    """Append who ran this message to ``drfleet:probe:<tag>`` and return it."""
    seen = {"task_id": self.request.id, "message_region": region,
            "worker_region": settings.REGION.get(),
            "hostname": self.request.hostname or socket.gethostname(), "pid": os.getpid(),
            "queue": (self.request.delivery_info or {}).get("routing_key")}
    state_client().rpush(key("probe", tag), json.dumps(seen))
    return seen
