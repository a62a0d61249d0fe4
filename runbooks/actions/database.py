"""Database failure: detect, promote the standby, redirect clients, build a new standby,
verify. Connection strings are resolved here on the worker from the plan's references and
never leave it (outputs carry host, port and database names only).

Promotion: the standby named by ``recovery.databases.NAME.standby`` is promoted with
``SELECT pg_promote()``; without that reference, the PITR registry's standby of the dataset
is promoted by ``pitr.standby.promote_standby``. The new standby is made
with ``pg_basebackup -R`` from the new primary and started with ``pg_ctl``, over SSH on the
plan host ``new_standby.host`` (``pitr.standby_remote``, shared with ``standby create --on``).
"""

from __future__ import annotations

import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from drfleet.errors import DrfleetError
from drfleet.pitr.standby_remote import RemoteStandby, build_remote_standby
from drfleet.providers.ssh import SshSession
from drfleet.runbooks.actions import SkipStep, StepContext, action
from drfleet.runbooks.actions.dns_switch import switch_to
from drfleet.runbooks.actions.hosts import resolve_host
from drfleet.secrets import resolve_secret


class PrimaryStillUp(DrfleetError):
    hint = "the primary answers: this is not a database failure (start with --force to fail over anyway)"


class PromoteFailed(DrfleetError):
    hint = "look at the standby's server log; it may be unable to leave recovery"


class ReplicationNotWorking(DrfleetError):
    hint = "check the new standby's log (standby.log in its data directory) and pg_hba replication rules"


def _primary(ctx: StepContext) -> str:
    ds = ctx.plan.dataset(ctx.spec.target)
    return resolve_secret(ds.connection, what=f"dataset {ctx.spec.target} connection")


def _standby(ctx: StepContext) -> str:
    """The standby's (after promotion: the new primary's) connection: the configured
    reference, else the dataset's connection moved to where the PITR standby was promoted."""
    db = ctx.recovery.database(ctx.spec.target)
    if db.standby is not None:
        return resolve_secret(db.standby, what=f"dataset {ctx.spec.target} standby connection")
    promoted = ctx.output_of("promote-standby") or {}
    if "port" not in promoted:
        raise PromoteFailed(f"dataset {ctx.spec.target} has no standby connection and no promoted PITR standby",
                            hint="set recovery.databases.NAME.standby: {env: VAR}")
    host = promoted.get("host")
    return make_conninfo(_primary(ctx), host="127.0.0.1" if host in (None, "local") else host,
                         port=str(promoted["port"]))


def _where(conninfo: str) -> dict:
    d = conninfo_to_dict(conninfo)
    return {"host": d.get("host"), "port": int(d.get("port") or 5432), "dbname": d.get("dbname")}


@action("detect_db_failure")
def detect_db_failure(ctx: StepContext) -> dict:
    """Confirm the primary does not answer (``params.force`` goes on anyway)."""
    primary = _primary(ctx)
    try:
        with psycopg.connect(primary, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return {"primary_down": True, "primary": _where(primary), "detail": str(exc).splitlines()[0][:300]}
    if ctx.p.get("force"):
        return {"primary_down": False, "primary": _where(primary), "forced": True}
    raise PrimaryStillUp(f"the primary of {ctx.spec.target} answers", **_where(primary))


def _registered_standby(dataset: str):
    try:
        from drfleet.pitr.standby import list_standbys
        return list_standbys(dataset) or None
    except (ImportError, NotImplementedError, ModuleNotFoundError):
        return None


@action("promote_standby")
def promote_standby(ctx: StepContext) -> dict:
    dataset = ctx.spec.target
    if ctx.recovery.database(dataset).standby is None:   # the PITR issue's registered standby
        if not _registered_standby(dataset):
            raise PromoteFailed(f"dataset {dataset} has no registered standby to promote",
                                hint="create one (`drfleet standby create`) or set recovery.databases.NAME.standby")
        from drfleet.pitr.standby import promote_standby as pitr_promote
        return pitr_promote(ctx.plan, dataset)
    standby = _standby(ctx)
    started = time.monotonic()
    with psycopg.connect(standby, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            return {"already_primary": True, "promoted": True, **_where(standby)}
        conn.execute("SELECT pg_promote(true, 60)")
        deadline = time.monotonic() + 90
        while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise PromoteFailed(f"the standby of {dataset} is still in recovery after 90s", **_where(standby))
            time.sleep(0.5)
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    return {"promoted": True, "already_primary": False, "timeline": timeline,
            "seconds": round(time.monotonic() - started, 3), **_where(standby)}


@action("redirect_clients")
def redirect_clients(ctx: StepContext) -> dict:
    """Point clients at the new primary: its DNS name and/or an endpoint file on a host."""
    db = ctx.recovery.database(ctx.spec.target)
    where = _where(_standby(ctx))
    out: dict = {"new_primary": where}
    if db.dns:
        out["dns"] = switch_to(ctx, db.dns.name, db.dns.type, where["host"], db.dns.ttl)
    if db.endpoint_file:
        host = resolve_host(ctx, db.endpoint_file.host)
        path = host.fill(db.endpoint_file.path)
        text = f"{where['host']}:{where['port']}/{where['dbname'] or ''}\n"
        with SshSession(host.target) as ssh:
            ssh.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && mv "$1.tmp" "$1"',
                     "sh", path], input=text)
        out["endpoint_file"] = f"{host.name}:{path}"
    if len(out) == 1:
        raise SkipStep("no dns or endpoint_file configured for this database", **out)
    return out


@action("new_standby")
def new_standby(ctx: StepContext) -> dict:
    db = ctx.recovery.database(ctx.spec.target)
    cfg = db.new_standby
    if cfg is None:
        raise SkipStep("no new_standby configured for this database")
    standby = _standby(ctx)
    password = conninfo_to_dict(standby).get("password") or ""
    # the password goes to pg_basebackup on stdin, never on a command line
    params = {k: v for k, v in conninfo_to_dict(standby).items() if k != "password"}
    conninfo = make_conninfo(**{**params, "dbname": "postgres"})
    host = resolve_host(ctx, cfg.host)
    data_dir = host.fill(cfg.data_dir)
    where = RemoteStandby(host.target, data_dir=data_dir, port=cfg.port, run_as=cfg.run_as,
                          bin_dir=cfg.bin_dir or "", listen=cfg.listen,
                          socket_dir=host.fill(cfg.socket_dir) if cfg.socket_dir else "")
    return {"host": host.name, "data_dir": data_dir, "port": cfg.port,
            "result": build_remote_standby(where, conninfo, password)}


@action("verify_db")
def verify_db(ctx: StepContext) -> dict:
    """A write on the new primary succeeds and (with a new standby) reaches the standby."""
    standby = _standby(ctx)
    marker = f"{ctx.run_id}"
    with psycopg.connect(standby, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS drfleet_failover_check (run_id text PRIMARY KEY, "
                     "at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO drfleet_failover_check (run_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     (marker,))
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    out = {"write_ok": True, "primary_in_recovery": in_recovery, **_where(standby)}
    cfg = ctx.recovery.database(ctx.spec.target).new_standby
    if cfg is None:
        return out
    host = resolve_host(ctx, cfg.host)
    replica = make_conninfo(standby, host=host.address, port=str(cfg.port))
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(replica, autocommit=True, connect_timeout=5) as conn:
                recovering = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                seen = conn.execute("SELECT count(*) FROM drfleet_failover_check WHERE run_id = %s",
                                    (marker,)).fetchone()[0]
            if recovering and seen:
                return {**out, "new_standby": {"host": host.name, "port": cfg.port, "replicated": True}}
            detail = f"in recovery: {recovering}, marker rows: {seen}"
        except psycopg.Error as exc:
            detail = str(exc).splitlines()[0][:300]
        if time.monotonic() > deadline:
            raise ReplicationNotWorking(f"the new standby of {ctx.spec.target} did not replicate the check row",
                                        host=host.name, port=cfg.port, detail=detail)
        time.sleep(1)
