"""Health checks the fleet runs on a schedule: each service's ``probe`` (an HTTP GET, a TCP
connect, or a command over SSH on its host; the ``health`` command when no probe is set)
and each database's connectivity and standby replay lag. Results are plain dicts (names,
numbers, short details; never a URL's credentials or a connection string): the task
(``tasks.health``) exports them as metrics, which the alert rules read.

``probe_service`` and ``check_database`` never raise for an unhealthy or unreachable
target; they raise RecoveryConfigInvalid for a name the plan's recovery section lacks.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Any

from drfleet.plan.models import Plan
from drfleet.plan.recovery import HealthProbe, Recovery
from drfleet.providers.ssh import SshError, SshSession, SshTarget

# replay lag; 0 when everything received is replayed (an idle primary is not "behind")
LAG_SQL = ("CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ELSE "
           "COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, judged by its status
        return None


def http_check(url: str, timeout: float, expect: list[int]) -> tuple[bool, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, method="GET", headers={"User-Agent": "drfleet-health"}),
                         timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer: {reason}"[:200]
    return status in expect, f"HTTP {status}"


def tcp_check(address: str, timeout: float) -> tuple[bool, str]:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True, "connected"
    except OSError as exc:
        return False, f"connect failed: {exc.strerror or exc}"[:200]


def command_check(plan: Plan, rec: Recovery, host_name: str, argv: list[str], timeout: float) -> tuple[bool, str]:
    host = plan.hosts[host_name]
    root = rec.host_roots.get(host_name, "")
    target = SshTarget(host=host.address, port=host.port, user=host.user, key_file=host.key_file,
                       known_hosts_file=host.known_hosts, connect_timeout=min(timeout, 10))
    try:
        with SshSession(target) as ssh:
            done = ssh.run([a.replace("{root}", root) for a in argv], timeout=timeout, check=False)
    except SshError as exc:
        return False, exc.message[:200]
    detail = (done.stderr_tail or done.stdout.decode(errors="replace"))[-200:].strip()
    return done.exit_status == 0, f"exit {done.exit_status}" + (f": {detail}" if detail else "")


def probe_service(plan: Plan, rec: Recovery, name: str) -> dict[str, Any]:
    """``{"service", "region", "kind", "healthy", "seconds", "detail"}`` for one check of ``name``."""
    svc = rec.service(name)
    probe = svc.probe or HealthProbe(command=svc.health, timeout_seconds=30)
    started = time.monotonic()
    if probe.http:
        healthy, detail = http_check(probe.http, probe.timeout_seconds, probe.expect_status)
    elif probe.tcp:
        healthy, detail = tcp_check(probe.tcp, probe.timeout_seconds)
    elif svc.host:
        healthy, detail = command_check(plan, rec, svc.host, probe.command, probe.timeout_seconds)
    else:
        healthy, detail = False, "the service has no probe and no host to run its health command on"
    return {"service": name, "region": svc.region, "kind": probe.kind, "healthy": healthy,
            "seconds": round(time.monotonic() - started, 4), "detail": detail}


def check_database(plan: Plan, rec: Recovery, dataset: str) -> dict[str, Any]:
    """The primary's connectivity (``SELECT 1`` within 5 s) and, with a standby reference,
    its replay lag: ``{"dataset", "region", "up", "lag_seconds", "detail"}``."""
    import psycopg

    from drfleet.secrets import resolve_secret

    ds = plan.dataset(dataset)
    out: dict[str, Any] = {"dataset": dataset, "region": ds.region, "up": False, "lag_seconds": None}
    try:
        with psycopg.connect(resolve_secret(ds.connection, what=f"dataset {dataset} connection"),
                             connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        out["up"] = True
    except Exception as exc:  # noqa: BLE001 - unreachable is the answer, said briefly
        out["detail"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    db = rec.databases.get(dataset)
    if db is not None and db.standby is not None:
        try:
            with psycopg.connect(resolve_secret(db.standby, what=f"dataset {dataset} standby"),
                                 connect_timeout=5) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), " + LAG_SQL).fetchone()
            out["lag_seconds"] = float(row[1]) if row[0] else 0.0
        except Exception as exc:  # noqa: BLE001
            out["standby_detail"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return out
