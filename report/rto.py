"""RTO per dataset and scenario, from the drill records: the latest and the worst time a
drill took to have the dataset restored and verified, against the plan's target.

Which target a drill is measured against: a restore drill, the dataset's own RTO
(``plan.rto_for``); a region, full or failover drill, the plan's objective for that
scenario when it has one (``region``; ``catastrophic``/``full-disaster``;
``single-service``/``service``), else the dataset's own.
"""

from __future__ import annotations

from drfleet.plan.models import Plan
from drfleet.report.rpo import target_or_none, trend
from drfleet.state.drills import DrillRecord
from drfleet.statuses import DrillResult

SCENARIOS_FOR_KIND = {
    "region": ("region", "server"),
    "full": ("catastrophic", "full-disaster", "full"),
    "failover": ("single-service", "service"),
}


def scenario_for(plan: Plan, kind: str, dataset: str | None = None) -> tuple[str, int | None]:
    """(scenario name, target seconds) a drill of ``kind`` is measured against."""
    for name in SCENARIOS_FOR_KIND.get(kind, ()):
        if name in plan.objectives.rto:
            return name, plan.objectives.rto[name]
    if dataset is None or dataset not in plan.datasets:
        return kind, None
    ds = plan.dataset(dataset)
    scenario = ds.scenario or ("database" if ds.kind != "files" else "single-service")
    return (scenario if kind == "restore" else kind), target_or_none(plan.rto_for, dataset)


def rto_rows(plan: Plan, drills: list[DrillRecord]) -> list[dict]:
    """One row per (dataset, drill kind) that has at least one measured restore."""
    measured: dict[tuple[str, str], list[tuple[float, float, bool]]] = {}
    for drill in drills:
        for outcome in drill.datasets:
            if outcome.rto_seconds is not None:
                measured.setdefault((outcome.dataset, drill.kind), []).append(
                    (drill.started_at, outcome.rto_seconds, outcome.ok))
    rows = []
    for (dataset, kind), values in sorted(measured.items()):
        values.sort()
        scenario, target = scenario_for(plan, kind, dataset)
        latest = values[-1][1]
        worst = max(v for _, v, _ in values)
        rows.append({"dataset": dataset, "drill": kind, "scenario": scenario, "target_seconds": target,
                     "latest_seconds": latest, "worst_seconds": worst, "drills": len(values),
                     "latest_ok": values[-1][2],
                     "margin_seconds": None if target is None else target - latest,
                     "worst_margin_seconds": None if target is None else target - worst,
                     "trend": trend(values[-2][1] if len(values) > 1 else None, latest),
                     "series": [(t, v) for t, v, _ in values]})
    return rows


def drill_rows(plan: Plan, drills: list[DrillRecord]) -> list[dict]:
    """One row per drill kind: whole-drill RTO (latest, worst) vs its scenario's target,
    and how many passed and failed."""
    by_kind: dict[str, list[DrillRecord]] = {}
    for drill in drills:
        if drill.result != DrillResult.RUNNING:
            by_kind.setdefault(drill.kind, []).append(drill)
    rows = []
    for kind, records in sorted(by_kind.items()):
        records.sort(key=lambda d: d.started_at)
        timed = [d for d in records if d.rto_seconds is not None]
        only = records[-1].datasets[0].dataset if len(records[-1].datasets) == 1 else None
        scenario, target = scenario_for(plan, kind, only)
        latest = records[-1]
        rows.append({"kind": kind, "scenario": scenario, "target_seconds": target,
                     "latest_result": latest.result, "latest_reason": latest.reason,
                     "latest_at": latest.started_at, "latest_seconds": latest.rto_seconds,
                     "worst_seconds": max((d.rto_seconds for d in timed), default=None),
                     "passed": sum(d.result == DrillResult.PASSED for d in records),
                     "failed": sum(d.result == DrillResult.FAILED for d in records),
                     "not_available": sum(d.result == DrillResult.NOT_AVAILABLE for d in records),
                     "trend": trend(timed[-2].rto_seconds if len(timed) > 1 else None,
                                    timed[-1].rto_seconds if timed else None)})
    return rows


# which runbook runs and drill kinds measure each scenario word of objectives.rto
SCENARIO_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # objective word: (runbook scenarios, drill kinds)
    "single-service": (("service-failure",), ("failover",)),
    "service": (("service-failure",), ("failover",)),
    "database": (("database-failure", "database-corruption"), ()),
    "server": (("server-failure",), ()),
    "region": (("region-failure",), ("region",)),
    "catastrophic": (("catastrophic",), ("full",)),
    "full-disaster": (("catastrophic",), ("full",)),
}


def scenario_rows(plan: Plan, drills: list[DrillRecord], runs: list) -> list[dict]:
    """One row per RTO objective of the plan (``objectives.rto``): the recovery times
    measured for it by runbook runs (``rto_seconds`` of succeeded runs) and drills of the
    matching kind (a failover drill counts for its runbook's scenario), latest and worst
    against the target; ``met`` None when nothing measured it."""
    rows = []
    for scenario, target in sorted(plan.objectives.rto.items()):
        run_kinds, drill_kinds = SCENARIO_SOURCES.get(scenario, ((), ()))
        measured = [(r.created_at, float(r.rto_seconds), f"runbook {r.scenario} {r.run_id}") for r in runs
                    if r.scenario in run_kinds and r.status == "succeeded" and r.rto_seconds is not None]
        for d in drills:
            counts = d.kind in drill_kinds or (d.kind == "failover" and d.scenario in run_kinds)
            if counts and d.result == DrillResult.PASSED and d.rto_seconds is not None:
                measured.append((d.started_at, float(d.rto_seconds), f"{d.kind} drill {d.drill_id}"))
        measured.sort()
        latest = measured[-1] if measured else None
        worst = max((m[1] for m in measured), default=None)
        rows.append({"scenario": scenario, "target_seconds": target,
                     "latest_seconds": latest[1] if latest else None, "latest_source": latest[2] if latest else None,
                     "worst_seconds": worst, "measurements": len(measured),
                     "margin_seconds": None if worst is None else target - worst,
                     "met": None if worst is None else worst <= target,
                     "series": [(t, v) for t, v, _ in measured]})
    return rows
