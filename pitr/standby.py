"""Streaming-replication standbys built from drfleet's own backups, and their promotion.

``create_standby`` lays down the newest base backup of a PostgreSQL dataset (or a chosen
one), writes ``standby.signal``, ``primary_conninfo`` (the dataset's connection, so the
standby streams from the primary) and a ``restore_command`` that fetches archived WAL from
drfleet (so it catches up from the archive first, then streams), starts it and waits until
it accepts read-only connections. ``promote_standby`` turns it into a primary and waits
until it accepts writes. Both record/consult a small registry of standbys per dataset in
``$DRFLEET_HOME/standbys/{dataset}.json`` so a runbook can promote "the standby of
auth-db" without knowing its directory.

Hosts: ``host="local"`` (or None) runs here; PostgreSQL runs as the ``postgres`` user when
drfleet runs as root. On another plan host the standby is built over SSH with
``pg_basebackup -R`` from the primary and started there (``pitr.standby_remote``); the
registry records the host, and ``promote_standby`` promotes it over SSH.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drfleet import settings
from drfleet.pitr import cluster
from drfleet.pitr.errors import NotAPostgresDataset, StandbyNotFound
from drfleet.pitr.recovery import (
    RecoveryTarget,
    check_reachable,
    choose_base_backup,
    lay_down,
    wal_command,
    write_settings,
)
from drfleet.plan.models import Plan


@dataclass(frozen=True)
class StandbyInfo:
    """Where a standby lives and what it was built from (no secrets)."""

    dataset: str
    host: str              # "local" or a plan host name
    data_dir: str
    port: int
    backup_id: str          # base backup it was built from
    created_at: str         # ISO 8601 UTC
    promoted_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _registry(dataset: str) -> Path:
    from drfleet.paths import drfleet_home
    return drfleet_home() / "standbys" / f"{dataset}.json"


def list_standbys(dataset: str) -> list[StandbyInfo]:
    """The registered standbys of ``dataset``, oldest first (empty when none)."""
    path = _registry(dataset)
    try:
        return [StandbyInfo(**entry) for entry in json.loads(path.read_text())]
    except FileNotFoundError:
        return []


def _save(dataset: str, standbys: list[StandbyInfo]) -> None:
    path = _registry(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{dataset}.")
    with os.fdopen(fd, "w") as handle:
        json.dump([s.to_dict() for s in standbys], handle, indent=2)
    os.replace(temp, path)


def _primary_conninfo(conn: str, dataset: str) -> str:
    """libpq keyword form of the dataset's connection, without dbname, with an application_name."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    params = conninfo_to_dict(conn)
    params.pop("dbname", None)
    params["application_name"] = f"drfleet-standby-{dataset}"
    return make_conninfo(**params)


def create_standby(plan: Plan, dataset: str, *, data_dir: str, host: str | None = "local",
                   port: int | None = None, backup_id: str | None = None,
                   primary_conninfo: str | None = None, start: bool = True,
                   timeout: float = 300.0) -> StandbyInfo:
    """Build a streaming-replication standby of ``dataset`` in ``data_dir`` on ``host``.

    ``data_dir`` must not exist or be empty. ``port`` defaults to a free port;
    ``primary_conninfo`` defaults to the dataset's connection (resolved on this machine).
    Returns the standby's ``StandbyInfo`` (also recorded in the registry).

    Raises NotAPostgresDataset, NoBaseBackup (nothing to build from), WalGap (the archive
    cannot bring the base backup to a consistent state), TargetDirNotEmpty, and
    ClusterStartFailed (with the server log's tail) when the standby does not come up.
    """
    ds = plan.dataset(dataset)
    if ds.kind != "postgres":
        raise NotAPostgresDataset(f"dataset {dataset} is of kind {ds.kind}", dataset=dataset)
    host = host or "local"
    if host != "local":
        return _create_remote(plan, dataset, data_dir=data_dir, host=host, port=port, backup_id=backup_id)
    plan_path = settings.PLAN.get()
    if not plan_path:
        raise StandbyNotFound("the standby's restore_command needs the plan file", dataset=dataset,
                              hint="pass --plan PLAN (or set DRFLEET_PLAN)")
    if primary_conninfo is None:
        from drfleet.datapath.sources import source_for
        primary_conninfo = _primary_conninfo(source_for(plan, dataset)[1], dataset)
    target = RecoveryTarget("latest")
    record = choose_base_backup(plan, dataset, target, backup_id)
    check_reachable(plan, dataset, record.manifest, RecoveryTarget("lsn", lsn=_stop_lsn(record.manifest)))
    from drfleet.pitr.recovery import _free_port
    port = port or _free_port()
    lay_down(plan, record, data_dir)
    write_settings(data_dir, {
        "restore_command": wal_command("fetch", plan_path, dataset),
        "primary_conninfo": primary_conninfo, "recovery_target_timeline": "latest",
        "hot_standby": True, "archive_mode": "off", "port": port, "listen_addresses": "127.0.0.1",
        "unix_socket_directories": os.path.abspath(data_dir)}, "standby.signal")
    if start:
        cluster.start(data_dir, port, until="streaming", timeout=timeout)
    info = StandbyInfo(dataset=dataset, host=host, data_dir=os.path.abspath(data_dir), port=port,
                       backup_id=record.backup_id, created_at=datetime.now(timezone.utc).isoformat())
    _save(dataset, [s for s in list_standbys(dataset) if s.data_dir != info.data_dir] + [info])
    return info


def _stop_lsn(manifest: Any) -> int:
    from drfleet.pitr.walnames import parse_lsn
    return parse_lsn(manifest.source_position["stop_lsn"])


def _create_remote(plan: Plan, dataset: str, *, data_dir: str, host: str, port: int | None,
                   backup_id: str | None) -> StandbyInfo:
    """Build the standby on plan host ``host`` over SSH from the primary itself (a base
    backup of the stores cannot reach a host that has no drfleet). Raises RemoteHostUnknown,
    StandbyNotFound for ``--backup`` (not possible remotely), and the SSH errors."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from drfleet.datapath.sources import source_for
    from drfleet.pitr.standby_remote import RemoteStandby, build_remote_standby, host_target

    target = host_target(plan, host)
    if backup_id:
        raise StandbyNotFound("a standby on another host is built from the primary, not from a stored base "
                              "backup", dataset=dataset, host=host, hint="leave out --backup")
    params = conninfo_to_dict(_primary_conninfo(source_for(plan, dataset)[1], dataset))
    password = params.pop("password", None) or ""
    port = port or 5432
    where = RemoteStandby(target, data_dir=data_dir, port=port, listen=plan.hosts[host].address,
                          socket_dir=data_dir)
    build_remote_standby(where, make_conninfo(**{**params, "dbname": "postgres"}), password)
    info = StandbyInfo(dataset=dataset, host=host, data_dir=data_dir, port=port, backup_id=None,
                       created_at=datetime.now(timezone.utc).isoformat())
    _save(dataset, [s for s in list_standbys(dataset) if (s.host, s.data_dir) != (host, data_dir)] + [info])
    return info


def _find(dataset: str, data_dir: str | None) -> StandbyInfo:
    standbys = list_standbys(dataset)
    if data_dir:
        wanted = os.path.abspath(data_dir)
        for info in standbys:
            if info.data_dir == wanted:
                return info
        raise StandbyNotFound(f"no standby of {dataset} is registered in {data_dir}", dataset=dataset,
                              data_dir=data_dir)
    if not standbys:
        raise StandbyNotFound(f"no standby of {dataset} is registered", dataset=dataset)
    return standbys[-1]


def promote_standby(plan: Plan, dataset: str, *, data_dir: str | None = None,
                    host: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Promote the standby of ``dataset`` (the registry's newest, or the one in
    ``data_dir``) and wait until it accepts writes.

    Returns ``{"dataset", "host", "data_dir", "port", "promoted": True, "timeline",
    "seconds"}``. Promoting an already promoted standby returns the same with
    ``"already_primary": True`` (idempotent, safe for task redelivery).

    Raises StandbyNotFound (no registered standby / no such directory) and PromoteFailed
    (with the server log's tail) when it does not leave recovery within ``timeout``.
    """
    plan.dataset(dataset)
    info = _find(dataset, data_dir)
    if host not in (None, "local", info.host):
        raise StandbyNotFound(f"the registered standby of {dataset} is on {info.host}, not {host}",
                              dataset=dataset, host=host)
    if info.host != "local":
        return _promote_remote(plan, info, timeout)
    in_recovery = None
    try:
        in_recovery = cluster.query(info.port, "SELECT pg_is_in_recovery()")[0]
    except Exception:  # noqa: BLE001 - not running: promote cannot work either
        pass
    if in_recovery is None:
        from drfleet.pitr.errors import PromoteFailed
        raise PromoteFailed(f"the standby of {dataset} does not accept connections", dataset=dataset,
                            data_dir=info.data_dir, port=info.port, log_tail=cluster.log_tail(info.data_dir))
    seconds, already = 0.0, not in_recovery
    if in_recovery:
        seconds = cluster.promote(info.data_dir, info.port, timeout=timeout)
        promoted = StandbyInfo(**{**info.to_dict(), "promoted_at": datetime.now(timezone.utc).isoformat()})
        _save(dataset, [promoted if s.data_dir == info.data_dir else s for s in list_standbys(dataset)])
    timeline, = cluster.query(info.port, "SELECT timeline_id FROM pg_control_checkpoint()")
    return {"dataset": dataset, "host": info.host, "data_dir": info.data_dir, "port": info.port,
            "promoted": True, "already_primary": already, "timeline": timeline, "seconds": round(seconds, 3)}


def _promote_remote(plan: Plan, info: StandbyInfo, timeout: float) -> dict[str, Any]:
    from drfleet.pitr.standby_remote import RemoteStandby, host_target, promote_remote_standby

    started = time.monotonic()
    where = RemoteStandby(host_target(plan, info.host), data_dir=info.data_dir, port=info.port)
    words = promote_remote_standby(where, timeout=timeout)
    if "promoted" in words:
        promoted = StandbyInfo(**{**info.to_dict(), "promoted_at": datetime.now(timezone.utc).isoformat()})
        _save(info.dataset, [promoted if (s.host, s.data_dir) == (info.host, info.data_dir) else s
                             for s in list_standbys(info.dataset)])
    return {"dataset": info.dataset, "host": info.host, "data_dir": info.data_dir, "port": info.port,
            "promoted": True, "already_primary": "already-primary" in words,
            "seconds": round(time.monotonic() - started, 3)}
