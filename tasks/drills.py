"""Drill and cold-storage verification tasks (issue 6).

``drfleet.drill`` runs one drill (``datapath.drills.run_drill``) on the region's data lane;
beat sends it from the plan's test schedule with ``kind``, ``region``, ``scope`` and its
``slot`` (one drill per slot, however many times the message arrives), and
``drfleet drill run KIND`` sends it on demand. A drill that finds a failure still succeeds
as a task: its result is the drill record, with ``result`` "failed" and the reason.

``drfleet.verify_cold`` re-reads every backup in the plan's cold-storage locations
(hashes, AEAD tags, plaintext digest) and records each result like any verification.
"""

from __future__ import annotations

from drfleet.settings import Limits
from drfleet.statuses import VerificationResult
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()


@app.task(bind=True, name="drfleet.drill", label="drill", lane="data", track_started=True, audited=True,
          idempotent_on=("kind", "region", "slot"),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def drill(self, kind: str, region: str, scope: str | None = None, slot: str | None = None,
          dataset: str | None = None, scenario: str | None = None, drill_id: str | None = None) -> dict:
    """Run a ``kind`` drill about ``region``; returns the drill record."""
    from drfleet.runbooks.drills import run_drill

    headers = self.request.headers or {}
    actor = headers.get("drfleet_actor") or ("beat" if headers.get("celery_beat_task") else "api")
    record = run_drill(current_plan(), kind, region=region, dataset=dataset, scenario=scenario, scope=scope,
                       actor=actor, task_id=self.request.id, drill_id=drill_id)
    return record.to_json()


@app.task(bind=True, name="drfleet.verify_cold", label="verify cold", lane="data", track_started=True,
          audited=True, idempotent_on=("region", "slot"),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def verify_cold(self, region: str, slot: str | None = None) -> dict:
    """Verify (depth full) every backup stored in a cold location the plan copies to."""
    from drfleet import metrics
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.verify import verify_backup
    from drfleet.runbooks.drills import cold_locations
    from drfleet.state import audit
    from drfleet.state.verifications import record_result

    plan = current_plan()
    locations = cold_locations(plan)
    checked, damaged = 0, []
    listing = list_backups(plan, locations=locations) if locations else None
    for backup in (listing.backups if listing else []):
        result = verify_backup(plan, f"{backup.dataset}/{backup.backup_id}", depth="full", location=backup.location)
        record_result(result["dataset"], result["backup_id"], result["location"], depth="full",
                      ok=result["ok"], problems=result["problems"])
        metrics.observe_verification(result["dataset"], "cold", ok=result["ok"])
        audit.record("verification", actor="beat" if slot else "api", outcome=VerificationResult.of(result["ok"]),
                     dataset=result["dataset"], backup_id=result["backup_id"], location=result["location"],
                     depth="full", cold=True, problems=len(result["problems"]))
        checked += 1
        if not result["ok"]:
            damaged.append({"dataset": result["dataset"], "backup_id": result["backup_id"],
                            "location": result["location"], "problems": result["problems"]})
    return {"locations": locations, "checked": checked, "damaged": damaged,
            "problems": listing.problems if listing else []}
