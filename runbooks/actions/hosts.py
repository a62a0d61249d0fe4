"""Hosts: reaching a plan host or a server a run provisioned, health checks, restart,
provisioning a server from the plan's cloud settings, and pushing configuration over SSH.

A *host reference* in step params is a plan host name, or ``step:NAME`` for the server
that step provisioned (its output holds address, port, host key and root directory).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.plan.recovery import RecoveryConfigInvalid
from drfleet.providers.ssh import SshError, SshSession, SshTarget, rsync_push, with_retries
from drfleet.runbooks.actions import SkipStep, StepContext, action


class HealthCheckFailed(DrfleetError):
    hint = "look at the service on that host (the health command's output is above)"


@dataclass(frozen=True)
class HostAccess:
    name: str
    address: str
    target: SshTarget
    root: str

    def fill(self, text: str) -> str:
        return text.replace("{root}", self.root)

    def argv(self, argv: list[str]) -> list[str]:
        return [self.fill(a) for a in argv]


def resolve_host(ctx: StepContext, ref: str) -> HostAccess:
    """The host behind ``ref``. Raises RecoveryConfigInvalid for an unknown name or a
    ``step:`` reference to a step that provisioned nothing."""
    if ref.startswith("step:"):
        out = ctx.output_of(ref[5:])
        if not out or "address" not in out:
            raise RecoveryConfigInvalid(f"step {ref[5:]} provisioned no server in this run", run_id=ctx.run_id)
        login = _login(ctx)
        known = ctx.workdir() / f"known_hosts-{out['server_id']}"
        host = f"[{out['address']}]:{out['port']}" if out["port"] != 22 else out["address"]
        known.write_text(f"{host} {out['host_key']}\n")
        return HostAccess(out["name"], out["address"],
                          SshTarget(host=out["address"], port=out["port"], user=login.user,
                                    key_file=login.key_file, known_hosts_file=str(known),
                                    connect_timeout=10), out.get("root", ""))
    host = ctx.plan.hosts.get(ref)
    if host is None:
        raise RecoveryConfigInvalid(f"unknown host {ref!r}", known=", ".join(sorted(ctx.plan.hosts)))
    return HostAccess(ref, host.address,
                      SshTarget(host=host.address, port=host.port, user=host.user, key_file=host.key_file,
                                known_hosts_file=host.known_hosts, connect_timeout=10),
                      ctx.recovery.host_roots.get(ref, ""))


def _login(ctx: StepContext):
    if ctx.recovery.ssh is None:
        raise RecoveryConfigInvalid("provisioned servers need recovery.ssh (user, key_file, known_hosts)")
    return ctx.recovery.ssh


def check_health(host: HostAccess, argv: list[str]) -> dict[str, Any]:
    """Run the health command on ``host``: ``{"healthy", "host", "detail"}``, never raises
    for an unhealthy or unreachable host."""
    try:
        with SshSession(host.target) as ssh:
            done = ssh.run(host.argv(argv), timeout=60, check=False)
    except SshError as exc:
        return {"healthy": False, "host": host.name, "detail": exc.message[:300]}
    detail = (done.stderr_tail or done.stdout.decode(errors="replace"))[-300:]
    return {"healthy": done.exit_status == 0, "host": host.name, "exit_status": done.exit_status,
            "detail": detail.strip()}


def _service_host(ctx: StepContext) -> HostAccess:
    """The host a service step acts on: a replacement a step provisioned (``prefer``) if
    there is one, else ``host``."""
    prefer = ctx.p.get("prefer")
    if prefer and ctx.output_of(prefer[5:] if prefer.startswith("step:") else prefer):
        return resolve_host(ctx, prefer)
    if not ctx.p.get("host"):
        raise RecoveryConfigInvalid(f"service {ctx.spec.target} has no host to act on")
    return resolve_host(ctx, ctx.p["host"])


@action("health")
def health(ctx: StepContext) -> dict:
    """Record whether the service answers; never fails."""
    svc = ctx.recovery.service(ctx.spec.target)
    return check_health(_service_host(ctx), svc.health)


@action("verify_health")
def verify_health(ctx: StepContext) -> dict:
    """Fail unless the service's health command succeeds (a few tries, 2 s apart)."""
    svc = ctx.recovery.service(ctx.spec.target)
    host = _service_host(ctx)
    attempts = int(ctx.p.get("attempts", 5))
    for n in range(attempts):
        result = check_health(host, svc.health)
        if result["healthy"]:
            return {**result, "tries": n + 1}
        time.sleep(2)
    raise HealthCheckFailed(f"service {ctx.spec.target} is not healthy on {host.name}",
                            host=host.name, detail=result["detail"], tries=attempts)


@action("restart")
def restart(ctx: StepContext) -> dict:
    """Run the service's restart command, then its health check. An unreachable host or a
    failing restart is an output (``healthy: false``), not a failure: the runbook goes on
    to redeploy."""
    svc = ctx.recovery.service(ctx.spec.target)
    if not svc.restart:
        return {"restarted": False, "healthy": False, "detail": "no restart command in the plan"}
    host = resolve_host(ctx, ctx.p["host"])
    try:
        with SshSession(host.target) as ssh:
            done = ssh.run(host.argv(svc.restart), timeout=300, check=False)
    except SshError as exc:
        return {"restarted": False, "healthy": False, "host": host.name, "detail": exc.message[:300]}
    after = check_health(host, svc.health) if done.exit_status == 0 else {"healthy": False}
    return {"restarted": done.exit_status == 0, "healthy": after["healthy"], "host": host.name,
            "detail": (done.stderr_tail or after.get("detail", ""))[-300:]}


@action("provision")
def provision(ctx: StepContext) -> dict:
    """Create a server in ``params.region`` with the plan's cloud settings (region, size,
    image), our SSH key installed; reuse the one this run already made (found by its
    labels). Returns where it is and its host key (public)."""
    from drfleet.providers.clouds import open_cloud
    from drfleet.providers.clouds.base import ServerSpec

    region = ctx.p["region"]
    settings = ctx.recovery.clouds.get(region)
    if settings is None:
        raise RecoveryConfigInvalid(f"no cloud settings for region {region} (recovery.clouds.{region})")
    login = _login(ctx)
    cloud = open_cloud(settings.provider, settings.settings())
    labels = {"drfleet-run": ctx.run_id, "drfleet-step": ctx.spec.name.replace(" ", "-"),
              "drfleet-service": ctx.spec.target}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    existing = cloud.list_servers(selector)
    host_key = None
    if existing:
        server = existing[0]
        reused = True
    else:
        reused = False
        key_id = cloud.upload_ssh_key("drfleet", Path(f"{login.key_file}.pub").read_text())
        user_data = None
        if settings.provider != "local":
            host_key, user_data = _pinned_host_key(ctx)
        server, act = cloud.create_server(ServerSpec(name=f"{ctx.spec.target}-{ctx.run_id[-8:]}",
                                                     ssh_key_ids=(key_id,), labels=labels,
                                                     user_data=user_data))
        if act is not None:
            cloud.wait_for(act, deadline_seconds=float(ctx.p.get("deadline_seconds", 900)))
    server = cloud.wait_until_running(server.id, float(ctx.p.get("deadline_seconds", 900)))
    if host_key is None:
        host_key = getattr(server, "host_key", None) or (ctx.workdir() / "host_key.pub").read_text().strip()
    return {"server_id": server.id, "name": server.name, "provider": settings.provider,
            "region": region, "address": server.ipv4, "port": getattr(server, "ssh_port", 22),
            "root": getattr(server, "root", ""), "host_key": host_key, "reused": reused}


def _pinned_host_key(ctx: StepContext) -> tuple[str, str]:
    """A host key made here and handed to cloud-init, so the new server's key is known
    before its first connection (strict host key checking, no trust on first use)."""
    key = ctx.workdir() / "host_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "drfleet-provisioned",
                        "-f", str(key)], check=True, stdout=subprocess.DEVNULL)
    public = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    private = "\n".join("      " + line for line in key.read_text().splitlines())
    user_data = (f"#cloud-config\nssh_deletekeys: true\nssh_keys:\n  ed25519_private: |\n{private}\n"
                 f"  ed25519_public: {public}\n")
    return public, user_data


@action("push_config")
def push_config(ctx: StepContext) -> dict:
    """Mirror the service's configuration directory onto the host over SSH (rsync)."""
    svc = ctx.recovery.service(ctx.spec.target)
    if svc.config is None:
        raise SkipStep("the service has no configuration to push")
    host = _service_host(ctx)
    remote = host.fill(svc.config.remote)
    with SshSession(host.target) as ssh:
        ssh.run(["mkdir", "-p", remote])
    result = with_retries(lambda: rsync_push(svc.config.local, host.target, remote, delete=True))
    return {"host": host.name, "remote": remote, "changed_items": result.changed_items}
