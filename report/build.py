"""The DR report as one JSON-able document: for every dataset the RPO target, the age of
its newest verified recovery point, the margin and the trend, with the freshness series
over the window; for every dataset and drill scenario the RTO target, the latest and worst
measured times, margin and trend; the drill kinds; optionally the monthly review."""

from __future__ import annotations

import time

from drfleet.plan.models import Plan
from drfleet.report.monthly import month_bounds, month_review
from drfleet.report.rpo import freshness_series, peak, recovery_points, rpo_now, trend
from drfleet.report.rto import drill_rows, rto_rows
from drfleet.state import drills

DEFAULT_WINDOW_DAYS = 30


def build_report(plan: Plan, *, now: float | None = None, window_days: float = DEFAULT_WINDOW_DAYS,
                 month: str | None = None, client=None) -> dict:
    """Raises MonthInvalid for a malformed ``month``; with a month, the window is that month."""
    now = time.time() if now is None else now
    if month:
        start, end = month_bounds(month)
        end = min(end, now)
    else:
        start, end = now - window_days * 86400, now
    middle = (start + end) / 2
    rpo = []
    for name in plan.datasets:
        points = recovery_points(name, client=client)
        row = rpo_now(plan, name, now=now, points=points, client=client)
        series = freshness_series(points, start, end)
        row.update(series=series, peak_seconds=peak(series, start, end),
                   trend=trend(peak(series, start, middle), peak(series, middle, end)))
        rpo.append(row)
    history = drills.history(client=client)
    in_window = [d for d in history if start <= d.started_at < end]
    return {
        "plan": plan.name, "generated_at": now, "window": {"start": start, "end": end},
        "rpo": rpo,
        "rto": rto_rows(plan, in_window),
        "drills": drill_rows(plan, in_window),
        "recent_drills": [{"drill_id": d.drill_id, "kind": d.kind, "region": d.region, "started_at": d.started_at,
                           "result": d.result, "reason": d.reason, "rto_seconds": d.rto_seconds,
                           "rpo_seconds": d.rpo_seconds} for d in in_window[-20:]],
        "month": month_review(month, client=client) if month else None,
    }
