"""Region-level checks: is a region really down, is the healthy side in sync, does DNS answer
with the new hosts, and is everything back after failover."""

from __future__ import annotations

import time

from drfleet.datapath.errors import BackupNotFound
from drfleet.errors import DrfleetError
from drfleet.runbooks.actions import StepContext, action
from drfleet.runbooks.actions.hosts import HealthCheckFailed, check_health, resolve_host


class NotARegionFailure(DrfleetError):
    hint = "the region's services answer: use the service-failure runbook for single services"


@action("confirm_region_down")
def confirm_region_down(ctx: StepContext) -> dict:
    """Health-check every service homed in the region; at least ``min_down`` (default: two,
    or all when fewer) must be down."""
    region = ctx.spec.target
    down, up = [], []
    for name, svc in sorted(ctx.recovery.services.items()):
        if svc.region != region or not svc.host:
            continue
        health = check_health(resolve_host(ctx, svc.host), svc.health)
        (up if health["healthy"] else down).append(name)
    needed = int(ctx.p.get("min_down") or min(2, len(down) + len(up)))
    if len(down) < max(needed, 1):
        raise NotARegionFailure(f"only {len(down)} service(s) of region {region} are down",
                                down=", ".join(down) or "(none)", up=", ".join(up) or "(none)",
                                needed=needed)
    return {"region": region, "down": down, "up": up}


@action("verify_services")
def verify_services(ctx: StepContext) -> dict:
    """Every service an earlier step moved (``params.checks``: step name -> service) is
    healthy on the host that step chose."""
    healthy = []
    for step, service in ctx.p["checks"].items():
        out = ctx.output_of(step) or {}
        svc = ctx.recovery.service(service)
        health = check_health(resolve_host(ctx, out["host"]), svc.health)
        if not health["healthy"]:
            raise HealthCheckFailed(f"service {service} is not healthy on {out['host']}",
                                    detail=health["detail"])
        healthy.append(service)
    return {"healthy": sorted(healthy)}


class TrafficNotMoved(DrfleetError):
    hint = "the DNS provider still answers with the old address: look at the record, then resume the run"


@action("check_sync")
def check_sync(ctx: StepContext) -> dict:
    """Is the healthy side in sync (the second seed's "ensure failover region is in sync")?
    For each dataset: a standby of a database in ``recovery.databases`` is asked for its
    replay lag (in sync within ``max_lag_seconds``); otherwise the newest backup outside the
    failed region must be within the dataset's RPO. Lists what is behind; fails only when a
    dataset has no copy outside the region at all."""
    import psycopg

    from drfleet.datapath.catalog import list_backups
    from drfleet.runbooks.actions.restore import candidate_locations
    from drfleet.runbooks.health import LAG_SQL
    from drfleet.secrets import resolve_secret

    failed, now, out, behind = ctx.spec.target, time.time(), {}, []
    outside = candidate_locations(ctx, f"not-region:{failed}") or []
    for name in ctx.p["datasets"]:
        db = ctx.recovery.databases.get(name)
        if db is not None and db.standby is not None:
            try:
                conn = resolve_secret(db.standby, what=f"dataset {name} standby connection")
                with psycopg.connect(conn, connect_timeout=5) as c:
                    lag = c.execute("SELECT " + LAG_SQL).fetchone()[0]
                row = {"via": "standby", "lag_seconds": round(float(lag), 3),
                       "in_sync": float(lag) <= db.max_lag_seconds}
            except Exception as exc:  # noqa: BLE001 - an unreachable standby is "not in sync", said so
                row = {"via": "standby", "in_sync": False, "detail": str(exc).splitlines()[0][:200]}
        else:
            listing = list_backups(ctx.plan, name, locations=outside) if outside else None
            if not listing or not listing.backups:
                raise BackupNotFound(f"no copy of {name} outside {failed}", dataset=name,
                                     looked_in=", ".join(outside) or "(no location outside the region)")
            newest = listing.backups[-1]
            age = now - newest.manifest.created_at.timestamp()
            rpo = ctx.plan.rpo_for(name)
            row = {"via": "copy", "backup_id": newest.backup_id, "location": newest.location,
                   "age_seconds": round(age, 1), "rpo_seconds": rpo, "in_sync": age <= rpo}
        out[name] = row
        if not row["in_sync"]:
            behind.append(name)
    return {"datasets": out, "behind": behind, "in_sync": not behind}


@action("check_traffic")
def check_traffic(ctx: StepContext) -> dict:
    """Read back every record a failover step switched (the seed's `dig plugspace.io`):
    the DNS provider must answer with the host that step chose. Raises TrafficNotMoved."""
    from drfleet.providers.dns import open_dns
    from drfleet.providers.dns.base import fqdn

    dns = ctx.recovery.dns
    client = open_dns(dns.provider, dns)
    answers = {}
    for step, service in ctx.p["checks"].items():
        out = ctx.output_of(step) or {}
        svc = ctx.recovery.service(service)
        record = client.get_record(fqdn(svc.dns.name, client.zone), svc.dns.type)
        expected = [resolve_host(ctx, out["host"]).address]
        values = sorted(record.values) if record else []
        if values != expected:
            raise TrafficNotMoved(f"{svc.dns.name} answers {values or 'nothing'}, not {expected}",
                                  service=service, record=svc.dns.name)
        answers[service] = {"record": svc.dns.name, "values": values, "ttl": record.ttl}
    return {"answers": answers}
