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
    from drfleet.tasks.restore import reading_progress

    headers = self.request.headers or {}
    actor = headers.get("drfleet_actor") or ("beat" if headers.get("celery_beat_task") else "api")
    with reading_progress(self, f"{kind} drill: restore"):  # `drill run --wait` shows the restores' progress
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


@app.task(bind=True, name="drfleet.deep_verify", label="deep verify", lane="data", track_started=True,
          audited=True, idempotent_on=("region", "slot"),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def deep_verify(self, region: str, slot: str | None = None) -> dict:
    """The plan's ``verification.deep_check``: the newest backup of every dataset homed in
    ``region`` restored into a scratch target and its fingerprint compared (depth deep).
    Fails (so it alerts) when any is damaged."""
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.verify import verify_backup
    from drfleet.errors import DrfleetError
    from drfleet.state import audit
    from drfleet.state.verifications import record_result

    plan = current_plan()
    checked, damaged = [], []
    for name in sorted(n for n, d in plan.datasets.items() if d.region == region):
        home = [n for n, loc in plan.storage.items() if not loc.offsite and loc.region == region]
        listing = list_backups(plan, name, locations=home or None)
        if not listing.backups:
            continue
        newest = listing.backups[-1]
        result = verify_backup(plan, f"{name}/{newest.backup_id}", depth="deep", location=newest.location)
        record_result(name, newest.backup_id, newest.location, depth="deep", ok=result["ok"],
                      problems=result["problems"])
        audit.record("verification", actor="beat" if slot else "api", outcome=VerificationResult.of(result["ok"]),
                     dataset=name, backup_id=newest.backup_id, location=newest.location, depth="deep")
        checked.append(f"{name}/{newest.backup_id}")
        if not result["ok"]:
            damaged.append({"backup": f"{name}/{newest.backup_id}", "problems": result["problems"][:5]})
    if damaged:
        raise DrfleetError("deep verification found damaged backups", region=region, damaged=damaged,
                           hint="`drfleet verify DATASET/ID --depth deep` shows each problem; take a new backup")
    return {"region": region, "checked": checked}


@app.task(bind=True, name="drfleet.copies_check_region", label="copies check", lane="data", track_started=True,
          audited=True, idempotent_on=("region", "slot"),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def copies_check_region(self, region: str, slot: str | None = None) -> dict:
    """``drfleet copies check --repair`` for the datasets homed in ``region``: missing or
    damaged copies re-seeded from a good one. Fails when a copy is still bad."""
    from drfleet.datapath.copies_check import check_copies
    from drfleet.errors import DrfleetError

    plan = current_plan()
    repaired, bad = [], []
    for name in sorted(n for n, d in plan.datasets.items() if d.region == region):
        report = check_copies(plan, name, repair=True)
        repaired += list(report.repaired)
        bad += [f"{b.dataset}/{b.backup_id}@{c.location}" for b in report.backups for c in b.copies
                if not (c.status in ("ok", "expired") or c.repaired)] + list(report.problems)
    if bad:
        raise DrfleetError("copies check left bad copies", region=region, bad=bad[:20],
                           hint="`drfleet copies check DATASET --no-repair --json` names each bad copy")
    return {"region": region, "repaired": repaired}


@app.task(bind=True, name="drfleet.oplog_capture", label="oplog", lane="data", track_started=True,
          audited=True, idempotent_on=("dataset", "policy", "slot"),
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def oplog_capture(self, dataset: str, policy: str, region: str, slot: str | None = None) -> dict:
    """A MongoDB ``mode: oplog`` policy on its trigger: the oplog entries since the last
    slice (or dump) stored as one slice (``pitr.oplog.capture_slice``); nothing new, nothing
    stored. Raises OplogGap when the oplog rolled over since the last slice."""
    from drfleet.datapath.sources import source_for
    from drfleet.pitr.oplog import capture_slice
    from drfleet.providers.datasources.mongodb import _client_factory

    plan = current_plan()
    conn = source_for(plan, dataset)[1]
    client = _client_factory(conn)
    try:
        summary = capture_slice(plan, dataset, client, policy=policy, region=region)
    finally:
        client.close()
    if summary is None:
        return {"dataset": dataset, "policy": policy, "captured": 0}
    from drfleet.tasks.copy import send_followups
    summary["followups"] = send_followups(summary, region)  # the slice goes wherever the policy copies
    return summary
