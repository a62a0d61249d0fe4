"""Switching a service's DNS record to a healthy host, TTL-aware."""

from __future__ import annotations

import time

from drfleet.plan.recovery import RecoveryConfigInvalid
from drfleet.providers.dns import open_dns, switch_record
from drfleet.runbooks.actions import StepContext, action
from drfleet.runbooks.actions.hosts import check_health, resolve_host


def switch_to(ctx: StepContext, name: str, rtype: str, address: str, ttl: int | None) -> dict:
    if ctx.recovery.dns is None:
        raise RecoveryConfigInvalid("switching DNS needs recovery.dns (provider, zone, credentials)")
    result = switch_record(open_dns(ctx.recovery.dns.provider, ctx.recovery.dns), name, rtype, [address], ttl=ttl).to_dict()
    until = result["clients_may_hold_old_until"]
    result["note"] = (f"resolvers may answer the old value for up to {result['old_ttl']}s, until "
                      f"{time.strftime('%H:%M:%S', time.gmtime(until))} UTC" if until else
                      "the record already pointed there" if not result["changed"] else "new record")
    return result


@action("dns_switch")
def dns_switch(ctx: StepContext) -> dict:
    """Point the service's record at the step's host (``params.host``/``prefer``)."""
    from drfleet.runbooks.actions.hosts import _service_host

    svc = ctx.recovery.service(ctx.spec.target)
    if svc.dns is None:
        raise RecoveryConfigInvalid(f"service {ctx.spec.target} has no dns: entry")
    host = _service_host(ctx)
    return {"host": host.name, **switch_to(ctx, svc.dns.name, svc.dns.type, host.address, svc.dns.ttl)}


@action("dns_failover")
def dns_failover(ctx: StepContext) -> dict:
    """Point the service's record at the first of ``params.candidates`` (plan hosts in
    other regions) whose health check passes. Fails when none is healthy."""
    svc = ctx.recovery.service(ctx.spec.target)
    if svc.dns is None:
        raise RecoveryConfigInvalid(f"service {ctx.spec.target} has no dns: entry")
    tried = []
    for ref in ctx.p["candidates"]:
        host = resolve_host(ctx, ref)
        health = check_health(host, svc.health)
        tried.append(health)
        if health["healthy"]:
            return {"host": host.name, "tried": tried,
                    **switch_to(ctx, svc.dns.name, svc.dns.type, host.address, svc.dns.ttl)}
    raise RecoveryConfigInvalid(f"no healthy instance of {ctx.spec.target} to fail over to",
                                tried=[f"{t['host']}: {t['detail']}" for t in tried],
                                hint="bring up an instance in another region (or run the catastrophic runbook)")
