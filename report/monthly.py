"""The monthly review the first plan asks for: backup success rate and completion time,
recovery time measured by drills, and integrity results, for one calendar month (UTC).

Sources: the audit log (``drfleet.backup`` runs with outcome and seconds, ``verification``
results) and the drill records.
"""

from __future__ import annotations

import re
import statistics
from datetime import datetime, timezone

from drfleet.errors import DrfleetError
from drfleet.state import audit, drills
from drfleet.statuses import DrillResult, TaskOutcome, VerificationResult


class MonthInvalid(DrfleetError):
    hint = "give the month as YYYY-MM, e.g. --month 2026-11"


def month_bounds(month: str) -> tuple[float, float]:
    """[start, end) of ``month`` ("YYYY-MM") as epoch seconds; raises MonthInvalid."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise MonthInvalid(f"{month!r} is not a month", month=month)
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=timezone.utc)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=timezone.utc)
    return start.timestamp(), end.timestamp()


def summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"count": len(values), "median": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def month_review(month: str, *, client=None) -> dict:
    """Raises MonthInvalid for a malformed month."""
    start, end = month_bounds(month)
    runs: dict[str, list[dict]] = {}
    checks = {result: 0 for result in VerificationResult}
    for rec in audit.entries(since=start, limit=10_000_000, client=client):
        if rec["at"] >= end:
            break
        if rec["action"] == "drfleet.backup" and rec["outcome"] in (TaskOutcome.SUCCEEDED, TaskOutcome.FAILED):
            runs.setdefault(rec["details"].get("dataset", "?"), []).append(rec)
        elif rec["action"] == "verification" and rec["outcome"] in checks:
            checks[rec["outcome"]] += 1
    all_runs = [r for rs in runs.values() for r in rs]
    succeeded = [r for r in all_runs if r["outcome"] == "succeeded"]
    per_dataset = {ds: {"runs": len(rs), "succeeded": sum(r["outcome"] == "succeeded" for r in rs),
                        "success_rate": rate(sum(r["outcome"] == "succeeded" for r in rs), len(rs)),
                        "completion_seconds": summary([float(r["details"].get("seconds") or 0)
                                                       for r in rs if r["outcome"] == "succeeded"])}
                   for ds, rs in sorted(runs.items())}
    held = [d for d in drills.history(since=start, until=end, client=client) if d.result != DrillResult.RUNNING]
    timed = [d.rto_seconds for d in held if d.rto_seconds is not None]
    kinds = sorted({d.kind for d in held})
    total_checks = sum(checks.values())
    return {
        "month": month, "start": start, "end": end,
        "backups": {"runs": len(all_runs), "succeeded": len(succeeded), "failed": len(all_runs) - len(succeeded),
                    "success_rate": rate(len(succeeded), len(all_runs)),
                    "completion_seconds": summary([float(r["details"].get("seconds") or 0) for r in succeeded]),
                    "per_dataset": per_dataset},
        "drills": {"runs": len(held), "passed": sum(d.result == DrillResult.PASSED for d in held),
                   "failed": sum(d.result == DrillResult.FAILED for d in held),
                   "not_available": sum(d.result == DrillResult.NOT_AVAILABLE for d in held),
                   "recovery_seconds": summary(timed),
                   "per_kind": {k: {"runs": sum(d.kind == k for d in held),
                                    "passed": sum(d.kind == k and d.passed for d in held),
                                    "recovery_seconds": summary([d.rto_seconds for d in held
                                                                 if d.kind == k and d.rto_seconds is not None])}
                                for k in kinds},
                   "failures": [{"drill_id": d.drill_id, "kind": d.kind, "at": d.started_at, "reason": d.reason}
                                for d in held if d.result == DrillResult.FAILED]},
        "integrity": {"verifications": total_checks, "ok": checks[VerificationResult.OK],
                      "damaged": checks[VerificationResult.DAMAGED],
                      "size_anomalies": checks[VerificationResult.SIZE_ANOMALY],
                      "ok_rate": rate(checks[VerificationResult.OK], total_checks)},
    }
