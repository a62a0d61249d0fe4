"""The scenarios as ordered step lists, built from the plan (pure: touches nothing, so
``--dry-run`` prints exactly what a run would do). The first seed plan's four, and the
second seed's runbooks (its service failure is the first one's with more steps, its data
center failover the region failure's):

* service-failure SERVICE: check health -> restart -> (if restart did not bring it back:
  the service's log, the host's memory and disk, restart everything on a short host when
  the plan gives those commands) -> provision a new server from the image, push
  configuration, restore the service's data, route traffic (DNS) to it -> verify health.
* database-corruption DATASET: stop the applications -> choose the newest good backup
  (before ``--at``) -> restore it in place (approval) -> verify the restored counts against
  the backup's fingerprint -> start the applications.
* server-failure HOST: provision a new server -> set it up (the services' setup commands)
  -> push configuration -> restore everything the host's services hold (certificates
  included) -> start the services -> verify health -> DNS.
* database-failure DATASET: detect -> promote the standby (approval) -> redirect clients ->
  provision a new standby -> verify integrity.
* region-failure REGION: confirm several services down -> DNS failover of each service to a
  healthy region -> check the other region is in sync (standby lag, newest copy outside the
  region vs the RPO) -> restore the region's datasets elsewhere from their copies -> check
  the switched records answer with the new hosts -> verify. Datasets with no copy outside
  the region cannot be recovered and are listed (``scenario_notes``).
* catastrophic: provision new servers in the fallback provider/region -> push configuration
  and restore from offsite copies, critical services first, then by priority -> verify ->
  DNS.
"""

from __future__ import annotations

from typing import Any

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.plan.recovery import Recovery, dataset_locations, lost_with_region, recovery_config
from drfleet.runbooks.steps import StepSpec

SCENARIOS = ("service-failure", "database-failure", "region-failure", "catastrophic",
             "database-corruption", "server-failure")


class UnknownScenario(DrfleetError):
    hint = f"scenarios: {', '.join(SCENARIOS)}"


def build_steps(plan: Plan, scenario: str, **params: Any) -> list[StepSpec]:
    """The steps of ``scenario`` for ``params`` (service=, dataset=, region=, host=, at=,
    force=). Raises UnknownScenario, RecoveryConfigInvalid, UnknownPlanName."""
    rec = recovery_config(plan)
    builders = {"service-failure": _service_failure, "database-failure": _database_failure,
                "region-failure": _region_failure, "catastrophic": _catastrophic,
                "database-corruption": _database_corruption, "server-failure": _server_failure}
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
    restart_failed = {"step": "restart", "key": "healthy", "equals": False}
    redeploy = restart_failed
    new = "step:provision"
    steps = [
        StepSpec("check-health", "health", service, region, {"host": svc.host},
                 description="is the service answering?"),
        StepSpec("restart", "restart", service, region, {"host": svc.host},
                 when={"step": "check-health", "key": "healthy", "equals": False}),
    ]
    if svc.logs or svc.restart_all:
        if svc.logs:
            steps.append(StepSpec("collect-logs", "collect_logs", service, region, {"host": svc.host},
                                  when=restart_failed, description="the service's recent log, for the record"))
        steps.append(StepSpec("check-resources", "check_resources", service, region, {"host": svc.host},
                              when=restart_failed, description="memory and disk of the host"))
        if svc.restart_all:
            steps.append(StepSpec("restart-all", "restart_all", service, region, {"host": svc.host},
                                  when={"step": "check-resources", "key": "resource_issue", "equals": True},
                                  description="restart every process on a host short of memory or disk"))
        steps.append(StepSpec("recheck", "health", service, region, {"host": svc.host}, when=restart_failed,
                              description="is it back after the restarts?"))
        redeploy = {"step": "recheck", "key": "healthy", "equals": False}
    steps += [
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
    homed = sorted((n for n, ds in plan.datasets.items() if ds.region == failed),
                   key=lambda n: (plan.dataset(n).priority, n))
    lost = set(lost_with_region(plan, failed))
    if any(n not in lost for n in homed):
        steps.append(StepSpec("check-sync", "check_sync", failed, runner,
                              {"datasets": [n for n in homed if n not in lost]},
                              description="is the healthy side in sync? standby lag, newest copy outside the region vs RPO"))
    for dataset in homed:
        targets = rec.restore_targets.get(dataset, {})
        to_region = next((r for r in targets if r != failed), None)
        if to_region and dataset not in lost:
            steps.append(StepSpec(f"restore-{dataset}", "restore", dataset, to_region,
                                  {"dataset": dataset, "target": targets[to_region],
                                   "locations": f"not-region:{failed}"}, lane="data"))
    if checks:
        steps.append(StepSpec("check-traffic", "check_traffic", failed, runner, {"checks": checks},
                              description="the switched records now answer with the healthy hosts"))
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
            if _stays_elsewhere(plan, dataset, region):
                continue  # region-only data outside the fallback region: see scenario_notes
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


def _stays_elsewhere(plan: Plan, dataset: str, region: str) -> bool:
    ds = plan.dataset(dataset)
    return ds.sovereign and ds.region != region


def _database_corruption(plan: Plan, rec: Recovery, *, dataset: str | None = None, at: str | None = None,
                         **_: Any) -> list[StepSpec]:
    dataset = _need(dataset, "dataset", "database-corruption")
    ds = plan.dataset(dataset)
    db = rec.database(dataset)
    region = ds.region
    target = db.restore_to or _connection_target(ds)
    steps = [StepSpec(f"stop-{svc}", "run_commands", svc, region, {"host": rec.service(svc).host, "which": "stop"},
                      description="stop the application") for svc in db.applications]
    steps += [
        StepSpec("choose-backup", "choose_backup", dataset, region, {"dataset": dataset, **({"at": at} if at else {})},
                 description="the newest backup that verified (before --at when given)"),
        StepSpec("restore", "restore", dataset, region,
                 {"dataset": dataset, "target": target, "backup": "step:choose-backup"}, lane="data",
                 destructive=True, description="replaces the live database's contents"),
        StepSpec("verify-counts", "verify_restore", dataset, region, {"dataset": dataset, "target": target,
                                                                     "backup": "step:choose-backup"},
                 lane="data", description="the restored data against the counts and checksums recorded at backup"),
    ]
    steps += [StepSpec(f"start-{svc}", "run_commands", svc, region, {"host": rec.service(svc).host, "which": "start"},
                       description="start the application") for svc in db.applications]
    return steps


def _connection_target(ds) -> str:
    ref = ds.connection
    return f"env:{ref.env}" if ref.env else f"file:{ref.file}"


def _server_failure(plan: Plan, rec: Recovery, *, host: str | None = None, force: bool = False,
                    **_: Any) -> list[StepSpec]:
    host = _need(host, "host", "server-failure")
    if host not in plan.hosts:
        raise UnknownScenario(f"host {host!r} is not in the plan", hosts=", ".join(sorted(plan.hosts)))
    ordered = sorted(((n, s) for n, s in rec.services.items() if s.host == host),
                     key=lambda ns: (not ns[1].critical, ns[1].priority, ns[0]))
    if not ordered:
        raise UnknownScenario(f"no service of the recovery section runs on host {host!r}",
                              hint="set recovery.services.NAME.host to it")
    region = plan.hosts[host].region or ordered[0][1].region
    new = "step:provision"
    steps = [StepSpec("confirm-host-down", "confirm_host_down", host, region,
                      {"services": [n for n, _ in ordered], "force": bool(force)}),
             StepSpec("provision", "provision", host, region, {"region": region},
                      description="a new server from the image")]
    for name, svc in ordered:
        if svc.setup:
            steps.append(StepSpec(f"setup-{name}", "run_commands", name, region, {"prefer": new, "which": "setup"}))
    for name, svc in ordered:
        if svc.config:
            steps.append(StepSpec(f"push-config-{name}", "push_config", name, region, {"prefer": new}))
    restored: set[str] = set()
    pairs = [(d, t, n) for n, svc in ordered for d, t in svc.restore.items()]
    for dataset, target, name in sorted(pairs, key=lambda p: (plan.dataset(p[0]).priority, p[0])):
        key = dataset if not target.startswith("host:") else f"{dataset}@{target}"
        if key in restored:
            continue
        restored.add(key)
        steps.append(StepSpec(f"restore-{dataset}", "restore", name, region,
                              {"dataset": dataset, "target": target, "prefer": new}, lane="data"))
    for name, svc in ordered:
        if svc.start or svc.restart:
            steps.append(StepSpec(f"start-{name}", "run_commands", name, region, {"prefer": new, "which": "start"}))
    for name, _svc in ordered:
        steps.append(StepSpec(f"verify-{name}", "verify_health", name, region, {"prefer": new}))
    for name, svc in ordered:
        if svc.dns:
            steps.append(StepSpec(f"dns-{name}", "dns_switch", name, region, {"prefer": new}))
    return steps


def scenario_notes(plan: Plan, scenario: str, **params: Any) -> list[str]:
    """What a run of ``scenario`` cannot do, for ``--dry-run``: region-only datasets with
    no copy outside the lost region, datasets of the region without a restore target, and
    region-only data the catastrophic runbook leaves out. Raises what ``build_steps`` raises."""
    rec = recovery_config(plan)
    notes = []
    if scenario == "region-failure" and params.get("region") in plan.region_names:
        region = params["region"]
        for name in lost_with_region(plan, region):
            why = "region-only" if plan.dataset(name).sovereign else "no copy target outside it"
            notes.append(f"{name} cannot survive the loss of {region}: every copy is in it or under its jurisdiction ({why})")
        lost = set(lost_with_region(plan, region))
        for name, ds in sorted(plan.datasets.items()):
            if ds.region == region and name not in lost and not any(
                    r != region for r in rec.restore_targets.get(name, {})):
                notes.append(f"{name} has copies outside {region} but no recovery.restore_targets entry: "
                             "not restored by this runbook")
    if scenario == "catastrophic" and rec.fallback_region:
        offsite = {n for n, loc in plan.storage.items() if loc.offsite}
        restored = {d for svc in rec.services.values() for d in svc.restore}
        for name, ds in sorted(plan.datasets.items()):
            if _stays_elsewhere(plan, name, rec.fallback_region):
                notes.append(f"{name} is region-only ({ds.region}): not rebuilt in {rec.fallback_region}")
            elif name in restored and not dataset_locations(plan, name) & offsite:
                notes.append(f"{name} has no offsite copy: its restore from offsite copies will fail")
    return notes
