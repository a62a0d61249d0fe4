"""``drfleet.reconcile``: one pass of ``workers.reconcile`` over a region's queues and in-flight
work, on that region's control lane (beat fires it every DRFLEET_RECONCILE_SECONDS). One pass
per region at a time: a pass that finds another running skips."""

from __future__ import annotations

from drfleet import settings
from drfleet.state.store import broker_client, key, state_client
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan
from drfleet.workers.reconcile import reconcile_region


# ignore_result: it runs every few seconds per region; what it did is in the log and the audit
@app.task(bind=True, name="drfleet.reconcile", label="reconcile", lane="control", ignore_result=True)
def reconcile(self, region: str) -> dict:
    state = state_client()
    lock = key("reconcile", region)
    if not state.set(lock, self.request.id or "local", nx=True, ex=max(30, 2 * settings.RECONCILE_SECONDS.get())):
        return {"region": region, "skipped": "another pass is running"}
    try:
        return reconcile_region(app, current_plan(), region, broker=broker_client(), state=state).to_dict()
    finally:
        state.delete(lock)
