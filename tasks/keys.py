"""``drfleet.rotate_keys``: beat's daily check of the key categories with ``rotate_every``
(on the primary region's control lane); a due category gets a new active key and every
older key is kept (``datapath.key_rotation``). Each rotation, skip and failure is audited
as ``keys.rotate`` by ``beat``."""

from __future__ import annotations

from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan


@app.task(bind=True, name="drfleet.rotate_keys", label="key rotation", lane="control", audited=True)
def rotate_keys(self, region: str, categories: list[str] | None = None, slot: str | None = None) -> dict:
    """Rotate every due category of ``categories`` (default: all with ``rotate_every``)."""
    from drfleet.datapath.key_rotation import rotate_if_due
    from drfleet.state import audit

    plan = current_plan()
    names = categories or [name for name, ref in plan.keys.items() if ref.rotate_every]
    results = {}
    for name in names:
        try:
            result = rotate_if_due(plan, name)
        except Exception as exc:  # noqa: BLE001 - one category's failure does not stop the others; it is audited
            audit.record("keys.rotate", actor="beat", outcome="failed", category=name, error=str(exc)[:500])
            results[name] = {"category": name, "status": "failed", "error": str(exc)}
            continue
        results[name] = result
        if result["status"] == "rotated":
            audit.record("keys.rotate", actor="beat", outcome="succeeded", category=name, key_id=result["active_key"],
                         old_key=result["old_key"], kept_keys=result["kept_keys"],
                         backups_on_older_keys=result["backups_on_older_keys"])
        elif result["status"] == "skipped":
            audit.record("keys.rotate", actor="beat", outcome="skipped", category=name, reason=result["reason"])
    return {"region": region, "categories": results}
