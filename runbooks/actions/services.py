"""Region-level checks: is a region really down, and is everything back after failover."""

from __future__ import annotations

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
