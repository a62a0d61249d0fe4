"""Standbys on other hosts, built and promoted over SSH (host keys checked strictly against
the plan host's known_hosts; an unknown or changed key fails before anything runs there).

The standby is made on the host itself with ``pg_basebackup -R -X stream`` from the primary
and started with ``pg_ctl``, as the PostgreSQL user (``runuser`` when the SSH login is
another user). The primary's password reaches pg_basebackup on stdin, never on a command
line. Used by ``drfleet standby create --on HOST`` (``pitr.standby``) and by the
database-failure runbook's new-standby step.
"""

from __future__ import annotations

from dataclasses import dataclass

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.ssh.client import SshSession, SshTarget

BUILD_SCRIPT = r'''
set -eu
D="$1"; PORT="$2"; CONNINFO="$3"; BIN="$4"; LISTEN="$5"; SOCK="$6"
if [ -z "$BIN" ]; then BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi
[ -n "$BIN" ] || BIN=$(dirname "$(command -v pg_ctl)")
if [ -f "$D/PG_VERSION" ]; then
  if "$BIN/pg_ctl" status -D "$D" >/dev/null 2>&1; then echo already-running; exit 0; fi
else
  IFS= read -r PGPASSWORD || true; export PGPASSWORD
  "$BIN/pg_basebackup" -D "$D" -R -X stream -c fast -d "$CONNINFO"
  echo base-backup-taken
fi
OPTS="-p $PORT -c listen_addresses=$LISTEN"
[ -z "$SOCK" ] || OPTS="$OPTS -k $SOCK"
"$BIN/pg_ctl" start -D "$D" -w -t 120 -l "$D/standby.log" -o "$OPTS" </dev/null >/dev/null
echo started
'''

PROMOTE_SCRIPT = r'''
set -eu
D="$1"; BIN="$2"
if [ -z "$BIN" ]; then BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); fi
[ -n "$BIN" ] || BIN=$(dirname "$(command -v pg_ctl)")
if [ ! -f "$D/standby.signal" ]; then echo already-primary; exit 0; fi
"$BIN/pg_ctl" promote -D "$D" -w -t "$3" >/dev/null
echo promoted
'''


class RemoteHostUnknown(DrfleetError):
    hint = "name a host of the plan's `hosts:` section (or `local`)"


@dataclass(frozen=True)
class RemoteStandby:
    """Where a standby is built: the SSH target and how PostgreSQL runs there."""

    target: SshTarget
    data_dir: str
    port: int
    run_as: str = "postgres"
    bin_dir: str = ""
    listen: str = "127.0.0.1"
    socket_dir: str = ""


def host_target(plan: Plan, host: str) -> SshTarget:
    """The plan host ``host`` as an SSH target. Raises RemoteHostUnknown."""
    spec = plan.hosts.get(host)
    if spec is None:
        raise RemoteHostUnknown(f"host {host!r} is not in the plan", host=host,
                                known=", ".join(sorted(plan.hosts)) or "(none)")
    return SshTarget(host=spec.address, port=spec.port, user=spec.user, key_file=spec.key_file,
                     known_hosts_file=spec.known_hosts, connect_timeout=10)


def _as_server_user(ssh: SshSession, where: RemoteStandby) -> list[str]:
    if where.target.user == where.run_as:
        return []
    ssh.run(["sh", "-c", 'mkdir -p "$1" && chown "$2" "$1" && chmod 700 "$1"', "sh", where.data_dir, where.run_as])
    return ["runuser", "-u", where.run_as, "--"]


def build_remote_standby(where: RemoteStandby, conninfo: str, password: str) -> list[str]:
    """Build (or start again) the standby at ``where`` from the primary at ``conninfo``
    (libpq form, no password). Returns the script's words (``base-backup-taken``,
    ``started`` or ``already-running``). Raises the SSH errors (HostKeyRejected before
    anything runs; RemoteCommandFailed with pg_basebackup's or pg_ctl's stderr tail)."""
    with SshSession(where.target) as ssh:
        prefix = _as_server_user(ssh, where)
        done = ssh.run(prefix + ["sh", "-c", BUILD_SCRIPT, "sh", where.data_dir, str(where.port), conninfo,
                                 where.bin_dir, where.listen, where.socket_dir],
                       input=password + "\n", timeout=3600)
    return done.stdout.decode(errors="replace").split()


def promote_remote_standby(where: RemoteStandby, timeout: float = 60.0) -> list[str]:
    """``pg_ctl promote -w`` on the host (``already-primary`` when it is). Raises the SSH
    errors (RemoteCommandFailed when it does not leave recovery in ``timeout`` seconds)."""
    with SshSession(where.target) as ssh:
        prefix = [] if where.target.user == where.run_as else ["runuser", "-u", where.run_as, "--"]
        done = ssh.run(prefix + ["sh", "-c", PROMOTE_SCRIPT, "sh", where.data_dir, where.bin_dir,
                                 str(int(timeout))], timeout=timeout + 30)
    return done.stdout.decode(errors="replace").split()
