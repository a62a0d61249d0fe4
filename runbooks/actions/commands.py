"""Commands on a service's host: its log, the host's memory and disk, restarting everything,
and the service's own stop/start/setup commands (the second seed plan's runbooks), plus the
check that a whole server is gone before it is replaced."""

from __future__ import annotations

from drfleet.errors import DrfleetError
from drfleet.providers.ssh import SshError, SshSession
from drfleet.runbooks.actions import SkipStep, StepContext, action
from drfleet.runbooks.actions.hosts import _service_host, check_health, resolve_host

DISK_FULL_PERCENT = 95      # a filesystem this full is a resource issue
MEMORY_LOW_PERCENT = 5      # less available memory than this is one too

# one line each: "disk PERCENT_USED", "mem AVAILABLE_KB TOTAL_KB"; {root} is the host's root
RESOURCES_SCRIPT = r'''
set -eu
df -P "$1" | awk 'NR==2 {sub("%","",$5); print "disk", $5}'
awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print "mem", a, t}' /proc/meminfo
'''


class CommandFailed(DrfleetError):
    hint = "run the command on the host by hand and read its output (the stderr tail is above)"


class HostStillUp(DrfleetError):
    hint = "the host's services answer: use the service-failure runbook (or --force to replace it anyway)"


@action("collect_logs")
def collect_logs(ctx: StepContext) -> dict:
    """Run the service's `logs` command on its host and keep the last lines in the run
    record (never fails: a host that cannot be reached says so)."""
    svc = ctx.recovery.service(ctx.spec.target)
    if not svc.logs:
        raise SkipStep("the service has no logs command")
    host = resolve_host(ctx, ctx.p["host"])
    try:
        with SshSession(host.target) as ssh:
            done = ssh.run(host.argv(svc.logs), timeout=60, check=False)
    except SshError as exc:
        return {"host": host.name, "reachable": False, "detail": exc.message[:300]}
    lines = done.stdout.decode(errors="replace").splitlines()[-100:]
    return {"host": host.name, "reachable": True, "exit_status": done.exit_status, "lines": lines}


def parse_resources(text: str) -> dict:
    """``{"disk_used_percent", "memory_available_percent", "resource_issue", "why"}`` from
    RESOURCES_SCRIPT's output. Raises CommandFailed when a line is missing."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in ("disk", "mem"):
            values[parts[0]] = [float(p) for p in parts[1:]]
    if "disk" not in values or len(values.get("mem", [])) != 2:
        raise CommandFailed("could not read the host's disk and memory", output=text[-300:])
    disk = values["disk"][0]
    available, total = values["mem"]
    mem_pct = round(100.0 * available / total, 1) if total else 0.0
    why = ([f"disk {disk:.0f}% used"] if disk >= DISK_FULL_PERCENT else []) + (
        [f"only {mem_pct}% memory available"] if mem_pct < MEMORY_LOW_PERCENT else [])
    return {"disk_used_percent": disk, "memory_available_percent": mem_pct, "resource_issue": bool(why),
            "why": why}


@action("check_resources")
def check_resources(ctx: StepContext) -> dict:
    """The host's disk use (of its root) and available memory (`free -m && df -h`); a disk
    at least 95% full or under 5% memory available is a resource issue."""
    host = resolve_host(ctx, ctx.p["host"])
    try:
        with SshSession(host.target) as ssh:
            done = ssh.run(["sh", "-c", RESOURCES_SCRIPT, "sh", host.fill("{root}/")], timeout=60)
    except SshError as exc:
        return {"host": host.name, "reachable": False, "resource_issue": False, "detail": exc.message[:300]}
    return {"host": host.name, "reachable": True, **parse_resources(done.stdout.decode(errors="replace"))}


@action("restart_all")
def restart_all(ctx: StepContext) -> dict:
    """Run the service's `restart_all` command (`pm2 restart all`) on its host, then its
    health check. A failure is an output, not a failure: redeploying comes next."""
    svc = ctx.recovery.service(ctx.spec.target)
    host = resolve_host(ctx, ctx.p["host"])
    try:
        with SshSession(host.target) as ssh:
            done = ssh.run(host.argv(svc.restart_all), timeout=300, check=False)
    except SshError as exc:
        return {"restarted": False, "healthy": False, "host": host.name, "detail": exc.message[:300]}
    after = check_health(host, svc.health)
    return {"restarted": done.exit_status == 0, "healthy": after["healthy"], "host": host.name,
            "detail": (done.stderr_tail or after.get("detail", ""))[-300:]}


@action("run_commands")
def run_commands(ctx: StepContext) -> dict:
    """Run the service's `stop`, `start` (else `restart`) or `setup` commands
    (``params.which``) on its host or the server this run provisioned; fails on the first
    command that exits non-zero, with its stderr tail."""
    svc = ctx.recovery.service(ctx.spec.target)
    which = ctx.p["which"]
    commands = {"stop": [svc.stop] if svc.stop else [],
                "start": [svc.start or svc.restart] if (svc.start or svc.restart) else [],
                "setup": list(svc.setup)}[which]
    if not commands:
        raise SkipStep(f"the service has no {which} command")
    host = _service_host(ctx)
    ran = []
    with SshSession(host.target) as ssh:
        for argv in commands:
            done = ssh.run(host.argv(argv), timeout=1800, check=False)
            if done.exit_status != 0:
                raise CommandFailed(f"{which} of {ctx.spec.target} failed on {host.name}", command=" ".join(argv),
                                    exit_status=done.exit_status, stderr_tail=done.stderr_tail[-500:])
            ran.append(" ".join(argv))
    return {"host": host.name, "which": which, "ran": ran}


@action("confirm_host_down")
def confirm_host_down(ctx: StepContext) -> dict:
    """Every service on the host fails its health check (``params.force`` goes on anyway)."""
    host = resolve_host(ctx, ctx.spec.target)
    results = {name: check_health(host, ctx.recovery.service(name).health) for name in ctx.p["services"]}
    up = sorted(n for n, r in results.items() if r["healthy"])
    if up and not ctx.p.get("force"):
        raise HostStillUp(f"host {host.name} still answers for {', '.join(up)}", host=host.name)
    return {"host": host.name, "down": sorted(n for n, r in results.items() if not r["healthy"]), "up": up,
            "forced": bool(up)}
