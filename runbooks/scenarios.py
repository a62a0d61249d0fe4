"""The four scenarios as ordered step lists, built from the plan (pure: touches nothing, so
``--dry-run`` prints exactly what a run would do).

* service-failure SERVICE: check health -> restart -> (if restart did not bring it back)
  provision a new server from the image, push configuration, restore the service's data,
  route traffic (DNS) to it -> verify health.
* database-failure DATASET: detect -> promote the standby (approval) -> redirect clients ->
  provision a new standby -> verify integrity.
* region-failure REGION: confirm several services down -> DNS failover of each service to a
  healthy region -> restore the region's datasets elsewhere from their copies -> verify.
* catastrophic: provision new servers in the fallback provider/region -> push configuration
  and restore from offsite copies, critical services first, then by priority -> verify ->
  DNS.
"""

from __future__ import annotations

from typing import Any

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.plan.recovery import Recovery, recovery_config
from drfleet.runbooks.steps import StepSpec

SCENARIOS = ("service-failure", "database-failure", "region-failure", "catastrophic")


class UnknownScenario(DrfleetError):
    hint = f"scenarios: {', '.join(SCENARIOS)}"


def build_steps(plan: Plan, scenario: str, **params: Any) -> list[StepSpec]:
    """The steps of ``scenario`` for ``params`` (service=, dataset=, region=, force=).
    Raises UnknownScenario, RecoveryConfigInvalid, UnknownPlanName."""
    rec = recovery_config(plan)
    builders = {"service-failure": _service_failure, "database-failure": _database_failure,
                "region-failure": _region_failure, "catastrophic": _catastrophic}
    if scenario not in builders:
        raise UnknownScenario(f"unknown runbook scenario {scenario!r}")
    steps = builders[scenario](plan, rec, **params)
    names = [s.name for s in steps]
    assert len(names) == len(set(names)), f"duplicate step names in {scenario}: {names}"
    return steps


def _need(value: Any, what: str, scenario: str) -> Any:
    if not value:
        raise UnknownScenario(f"the {scenario} runbook needs --{what}", hint=f"drfleet runbook start {scenario} --{what} NAME")
    return value


def _restores(plan: Plan, svc_restore: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(svc_restore.items(), key=lambda kv: (plan.dataset(kv[0]).priority, kv[0]))


def _service_failure(plan: Plan, rec: Recovery, *, service: str | None = None, **_: Any) -> list[StepSpec]:
    service = _need(service, "service", "service-failure")
    svc = rec.service(service)
    region = svc.region
    redeploy = {"step": "restart", "key": "healthy", "equals": False}
    new = "step:provision"
    steps = [
        StepSpec("check-health", "health", service, region, {"host": svc.host},
                 description="is the service answering?"),
        StepSpec("restart", "restart", service, region, {"host": svc.host},
                 when={"step": "check-health", "key": "healthy", "equals": False}),
        StepSpec("provision", "provision", service, region, {"region": region}, when=redeploy,
                 description="redeploy from the image: a new server"),
        StepSpec("push-config", "push_config", service, region, {"prefer": new}, when=redeploy),
    ]
    for dataset, target in _restores(plan, svc.restore):
        steps.append(StepSpec(f"restore-{dataset}", "restore", service, region,
                              {"dataset": dataset, "target": target, "prefer": new},
                              lane="data", when=redeploy))
    if svc.dns:
        steps.append(StepSpec("route-traffic", "dns_switch", service, region, {"prefer": new},
                              when=redeploy))
    steps.append(StepSpec("verify", "verify_health", service, region, {"host": svc.host, "prefer": new}))
    return steps


def _database_failure(plan: Plan, rec: Recovery, *, dataset: str | None = None, force: bool = False,
                      **_: Any) -> list[StepSpec]:
    dataset = _need(dataset, "dataset", "database-failure")
    ds = plan.dataset(dataset)
    db = rec.database(dataset)
    region = ds.region
    steps = [StepSpec("detect", "detect_db_failure", dataset, region, {"force": bool(force)}),
             StepSpec("promote-standby", "promote_standby", dataset, region, destructive=True,
                      description="the standby becomes the primary")]
    if db.dns or db.endpoint_file:
        steps.append(StepSpec("redirect-clients", "redirect_clients", dataset, region))
    if db.new_standby:
        steps.append(StepSpec("new-standby", "new_standby", dataset, region,
                              {"host": db.new_standby.host, "data_dir": db.new_standby.data_dir}, lane="data"))
    steps.append(StepSpec("verify-integrity", "verify_db", dataset, region))
    return steps


def _healthy_region(plan: Plan, failed: str, rec: Recovery) -> str:
    others = [r.name for r in plan.regions if r.name != failed]
    if rec.fallback_region and rec.fallback_region != failed:
        return rec.fallback_region
    if not others:
        raise UnknownScenario("the plan has no other region to fail over to", failed_region=failed)
    primary = plan.primary_region
    return primary if primary in others else others[0]


def _region_failure(plan: Plan, rec: Recovery, *, region: str | None = None, **_: Any) -> list[StepSpec]:
    failed = _need(region, "region", "region-failure")
    if failed not in plan.region_names:
        raise UnknownScenario(f"region {failed!r} is not in the plan", regions=", ".join(plan.region_names))
    runner = _healthy_region(plan, failed, rec)
    steps = [StepSpec("confirm-region-down", "confirm_region_down", failed, runner)]
    checks = {}
    services = sorted((n, s) for n, s in rec.services.items() if s.region == failed)
    for name, svc in sorted(services, key=lambda ns: (not ns[1].critical, ns[1].priority, ns[0])):
        candidates = [h for r, h in svc.instances.items() if r != failed]
        if svc.dns and candidates:
            steps.append(StepSpec(f"failover-{name}", "dns_failover", name, runner, {"candidates": candidates}))
            checks[f"failover-{name}"] = name
    for dataset, targets in sorted(rec.restore_targets.items(), key=lambda kv: (plan.dataset(kv[0]).priority, kv[0])):
        if plan.dataset(dataset).region != failed:
            continue
        to_region = next((r for r in targets if r != failed), None)
        if to_region:
            steps.append(StepSpec(f"restore-{dataset}", "restore", dataset, to_region,
                                  {"dataset": dataset, "target": targets[to_region],
                                   "locations": f"not-region:{failed}"}, lane="data"))
    steps.append(StepSpec("verify", "verify_services", failed, runner, {"checks": checks}))
    return steps


def _catastrophic(plan: Plan, rec: Recovery, **_: Any) -> list[StepSpec]:
    region = rec.fallback_region
    if not region or region not in rec.clouds:
        raise UnknownScenario("the catastrophic runbook needs recovery.fallback_region with cloud settings",
                              hint="set recovery.fallback_region and recovery.clouds.REGION in the plan")
    ordered = sorted(rec.services.items(), key=lambda ns: (not ns[1].critical, ns[1].priority, ns[0]))
    steps = [StepSpec(f"provision-{n}", "provision", n, region, {"region": region}) for n, _ in ordered]
    restored: dict[str, set[str]] = {}   # dataset -> targets already restored (shared databases once)
    for name, svc in ordered:
        new = f"step:provision-{name}"
        if svc.config:
            steps.append(StepSpec(f"push-config-{name}", "push_config", name, region, {"prefer": new}))
        for dataset, target in _restores(plan, svc.restore):
            done = restored.setdefault(dataset, set())
            if not target.startswith("host:") and target in done:
                continue
            step = f"restore-{dataset}" if not done else f"restore-{dataset}-for-{name}"
            done.add(target)
            steps.append(StepSpec(step, "restore", name, region,
                                  {"dataset": dataset, "target": target, "prefer": new,
                                   "locations": "offsite"}, lane="data"))
    for name, _svc in ordered:
        steps.append(StepSpec(f"verify-{name}", "verify_health", name, region,
                              {"prefer": f"step:provision-{name}"}))
    for name, svc in ordered:
        if svc.dns:
            steps.append(StepSpec(f"dns-{name}", "dns_switch", name, region,
                                  {"prefer": f"step:provision-{name}"}))
    return steps
