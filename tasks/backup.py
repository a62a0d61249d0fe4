"""Backup tasks: ``backup`` (one dataset, one policy, one slot) on the dataset's region's
data lane, and ``trigger`` (an event starting the on-event policies of a dataset). The
work itself is ``datapath.backup.run_backup``; this module only adapts it to Celery
(progress as task state, so Flower and ``drfleet backup --wait`` show it). Once a
backup commits, its follow-ups are queued: a verify, and a copy per location its policy
names (``tasks.copy.send_followups``).

A failure that a later attempt can get past (a store unavailable, a remote host dropping
the connection, a database restarting under pg_dump) is retried within the slot by the
task base's one retry policy: DRFLEET_BACKUP_RETRIES attempts more (default 3), the first
after DRFLEET_BACKUP_RETRY_SECONDS (default 30), doubling. A retry keeps its task id and so
its idempotency claim; any other failure fails the task at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from drfleet import settings
from drfleet.retry import Backoff
from drfleet.settings import Limits
from drfleet.statuses import JobStatus
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.backup", label="backup", lane="data", track_started=True,
          idempotent_on=("dataset", "policy", "slot"), audited=True,
          transient_retries=settings.BACKUP_RETRIES,
          transient_backoff=Backoff(first=settings.BACKUP_RETRY_SECONDS, cap=600.0),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def backup(self, dataset: str, policy: str, region: str, slot: str | None = None) -> dict:
    """Back ``dataset`` up under ``policy``; returns the committed manifest's summary, with
    the ids of the follow-up tasks under ``followups``."""
    from drfleet.datapath.backup import run_backup
    from drfleet.tasks.copy import send_followups

    def progress(meta: dict) -> None:
        if self.request.id:
            self.update_state(state="PROGRESS", meta=meta)

    plan = current_plan()
    summary = None
    resent = bool((self.request.headers or {}).get("drfleet_resend"))
    if self.request.id and (getattr(self.request, "drfleet_resumed", False) or resent or _is_scheduled(slot)):
        # an earlier delivery of this message was killed, or the message was sent again,
        # or (a scheduled slot) Redis lost the claim of a run that committed: one slot must
        # not become two backups, so look for it in the store first
        summary = committed_for(plan, dataset, policy, self.request.id, slot)
    if summary is None:
        summary = run_backup(plan, dataset, policy, region=region, slot=slot,
                             task_id=self.request.id, progress=progress)
    summary["followups"] = send_followups(summary, region)  # copies are idempotent per location
    return summary


def _is_scheduled(slot: str | None) -> bool:
    """A beat slot (an ISO time), not an event, watch or manual slot."""
    try:
        return bool(slot) and datetime.fromisoformat(slot) is not None
    except ValueError:
        return False


def committed_for(plan, dataset: str, policy: str, task_id: str, slot: str | None) -> dict | None:
    """The summary of a committed backup of ``dataset`` in its home store that this message
    already made: written by task ``task_id`` (label ``task_id``), or, for a scheduled slot,
    of the same policy and slot. None when there is none. Only the manifests of backups started
    at or after the slot are read (found by the date their ids begin with)."""
    from drfleet.backup_format.layout import backup_time, manifests_prefix, parse_manifest_key
    from drfleet.datapath.catalog import read_manifest
    from drfleet.datapath.locations import home_location, store_for

    location = home_location(plan, dataset)
    store = store_for(plan, location)
    since = datetime.fromisoformat(slot) - timedelta(seconds=1) if _is_scheduled(slot) else None
    prefixes = [manifests_prefix(dataset)]
    days = (datetime.now(timezone.utc).date() - since.astimezone(timezone.utc).date()).days + 1 if since else 0
    if 0 < days <= 8:  # ids start with the UTC start date: list only the days since the slot
        start = since.astimezone(timezone.utc)
        prefixes = [manifests_prefix(dataset) + (start + timedelta(days=d)).strftime("%Y%m%d") for d in range(days)]
    for prefix in prefixes:
        for info in store.list(prefix):
            _, backup_id = parse_manifest_key(info.key)
            if since is not None and backup_time(backup_id) < since:
                continue
            manifest = read_manifest(store, dataset, backup_id)
            if manifest.labels.get("task_id") == task_id or (
                    since is not None and manifest.policy == policy and manifest.slot == slot):
                return {"status": JobStatus.COMMITTED, "backup_id": backup_id, "dataset": dataset,
                        "policy": manifest.policy, "location": location, "slot": manifest.slot,
                        "plaintext_size": manifest.plaintext_size,
                        "stored_size": sum(o.size for o in manifest.objects), "resumed": True}
    return None


@app.task(bind=True, name="drfleet.trigger", label="trigger", audited=True)
def trigger(self, dataset: str, region: str, event: str | None = None, event_id: str | None = None) -> list[str]:
    """Start a backup of every on-event policy of ``dataset`` (matching ``event`` when
    given). ``event_id`` makes repeated deliveries of one event take one backup."""
    plan = current_plan()
    ds = plan.dataset(dataset)
    # Without an event id, the message's own id: a redelivered message takes no second backup.
    event_id = event_id or self.request.id or uuid.uuid4().hex
    sent = []
    for policy in ds.policies:
        if policy.trigger.kind == "on-event" and (event is None or policy.trigger.event == event):
            result = backup.apply_async(kwargs={"dataset": dataset, "policy": policy.name,
                                                "region": ds.region, "slot": f"event:{event_id}"})
            sent.append(result.id)
    return sent
