"""The DR report as one JSON-able document: for every dataset the RPO target, the age of
its newest verified recovery point, the margin and the trend, with the freshness series
over the window; for every dataset and drill scenario the RTO target, the latest and worst
measured times, margin and trend; per RTO objective (scenario) the times runbook runs and
drills measured; the drill kinds; ``unmet``: every target missed or without data (what makes
``drfleet report`` exit 1); optionally the monthly review."""

from __future__ import annotations

import time

from drfleet.plan.models import Plan
from drfleet.report.monthly import month_bounds, month_review
from drfleet.report.rpo import freshness_series, peak, recovery_points, rpo_now, trend
from drfleet.report.rto import drill_rows, rto_rows, scenario_rows
from drfleet.state import drills

DEFAULT_WINDOW_DAYS = 30


def build_report(plan: Plan, *, now: float | None = None, window_days: float = DEFAULT_WINDOW_DAYS,
                 month: str | None = None, client=None, runs: list | None = None) -> dict:
    """``runs``: the runbook runs (``runbooks.records.Run``) to measure scenarios with (the
    CLI passes the state's recent runs). Raises MonthInvalid for a malformed ``month``;
    with a month, the window is that month."""
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
    runs = [r for r in runs or [] if start <= r.created_at < end]
    report = {
        "plan": plan.name, "generated_at": now, "window": {"start": start, "end": end},
        "rpo": rpo,
        "rto": rto_rows(plan, in_window),
        "scenarios": scenario_rows(plan, in_window, runs),
        "drills": drill_rows(plan, in_window),
        "recent_drills": [{"drill_id": d.drill_id, "kind": d.kind, "region": d.region, "started_at": d.started_at,
                           "result": d.result, "reason": d.reason, "rto_seconds": d.rto_seconds,
                           "rpo_seconds": d.rpo_seconds} for d in in_window[-20:]],
        "month": month_review(month, client=client) if month else None,
    }
    report["unmet"] = unmet_targets(report)
    return report


def unmet_targets(report: dict) -> list[str]:
    """One line per target missed or without data in ``report``: every dataset's RPO, every
    dataset/drill RTO row, and every RTO objective of the plan."""
    out = []
    for r in report["rpo"]:
        if r["target_seconds"] is None:
            continue
        if r["met"] is None:
            out.append(f"RPO of {r['dataset']}: no recovery point (no data)")
        elif not r["met"]:
            out.append(f"RPO of {r['dataset']}: missed by {-r['margin_seconds']:.0f}s")
    for r in report["rto"]:
        if r["margin_seconds"] is not None and r["margin_seconds"] < 0:
            out.append(f"RTO of {r['dataset']} ({r['drill']} drill): missed by {-r['margin_seconds']:.0f}s")
    for r in report["scenarios"]:
        if r["met"] is None:
            out.append(f"RTO of scenario {r['scenario']}: never measured in this window (no data)")
        elif not r["met"]:
            out.append(f"RTO of scenario {r['scenario']}: missed by {-r['margin_seconds']:.0f}s")
    return out
