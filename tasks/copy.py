"""Copy tasks: put a committed backup on another storage location (``datapath.copy``), and
the follow-ups every committed backup gets (copies to its policy's locations, a verify).

``drfleet.copy`` runs on the dataset's home region's data lane, is idempotent on
(backup id, location), and retries with backoff while the destination store is
unavailable, or fails transiently otherwise (the task base's retry policy; a retry keeps its task id, so it keeps its idempotency claim). A copy that
fails leaves no manifest at the destination; ``drfleet copies check`` re-seeds it later.
"""

from __future__ import annotations

import logging

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.retry import Backoff
from drfleet.settings import Limits
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

logger = logging.getLogger("drfleet.copy")
_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.copy", label="copy", lane="data", track_started=True,
          idempotent_on=("backup_id", "location"), audited=True,
          transient_retries=settings.COPY_RETRIES, transient_backoff=Backoff(first=2.0, cap=600.0, jitter=True),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def copy(self, backup_id: str, location: str, region: str, source: str | None = None) -> dict:
    """Copy ``backup_id`` (DATASET/ID) to ``location``, then queue a quick verify of the
    copy. Raises what ``datapath.copy.copy_backup`` raises (SovereigntyViolation before
    anything is written, CopyHashMismatch, WrongRegion, store errors after the retries)."""
    from drfleet.datapath.copy import copy_backup

    result = copy_backup(current_plan(), backup_id, location, source=source, region=region).as_dict()
    if result["status"] == "copied":
        result["verify_task"] = _send_verify(f"{result['dataset']}/{result['backup_id']}", region,
                                             "quick", location)
    return result


def _send_verify(backup_ref: str, region: str, depth: str, location: str) -> str:
    from drfleet.tasks.restore import verify
    return verify.apply_async(kwargs={"backup_id": backup_ref, "region": region, "depth": depth,
                                      "location": location}).id


def send_followups(summary: dict, region: str) -> dict:
    """After a committed backup: a verify of it (the plan's ``verification.after_backup``
    depth; none when "none") and one ``drfleet.copy`` per other location its policy
    names. Returns the task ids sent, by purpose. Never raises: the backup is committed
    whatever happens here; a failure to send is logged and returned under ``error``
    (``drfleet copies check`` finds and re-seeds the copies that were not made)."""
    try:
        return _send_followups(summary, region)
    except Exception as exc:  # noqa: BLE001
        logger.error("backup %s/%s committed, but its follow-ups were not all queued: %s",
                     summary.get("dataset"), summary.get("backup_id"), exc)
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def _send_followups(summary: dict, region: str) -> dict:
    from drfleet.datapath.locations import copy_locations

    plan = current_plan()
    dataset, backup_id, here = summary["dataset"], summary["backup_id"], summary["location"]
    ref = f"{dataset}/{backup_id}"
    sent: dict = {"copies": {}}
    depth = plan.verification.after_backup
    if depth != "none":
        sent["verify"] = _send_verify(ref, region, depth, here)
    for location, _cold in copy_locations(plan, dataset, summary["policy"]):
        if location != here:
            sent["copies"][location] = copy.apply_async(
                kwargs={"backup_id": ref, "location": location, "region": region}).id
    logger.info("backup %s: queued verify and %d copies (%s)", ref, len(sent["copies"]),
                ", ".join(sent["copies"]) or "none")
    return sent


@app.task(bind=True, name="drfleet.copies_check", label="copies check", lane="data", track_started=True,
          idempotent_on=("region", "slot"), audited=True,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def copies_check(self, region: str, slot: str | None = None, repair: bool = True) -> dict:
    """Beat's weekly ``drfleet copies check``: every copy of every backup checked against its
    manifest, missing or damaged copies re-seeded from a good one. Returns the summary (what
    was repaired, what is still bad); a copy still bad fails the task so it alerts."""
    from drfleet.datapath.copies_check import check_copies

    report = check_copies(current_plan(), repair=repair)
    summary = {"ok": report.ok, "healthy": report.healthy, "repaired": report.repaired,
               "problems": report.problems,
               "bad": [f"{b.dataset}/{b.backup_id}" for b in report.backups if not b.ok]}
    if not report.healthy:
        raise CopiesStillBad("copies check left bad copies", bad=summary["bad"][:20] or None,
                             problems=report.problems[:20] or None, repaired=len(report.repaired))
    return summary


class CopiesStillBad(DrfleetError):
    hint = "run `drfleet copies check --no-repair --json` to see each copy's state; no good copy may be left"
