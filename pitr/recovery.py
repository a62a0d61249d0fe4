"""Point-in-time recovery: lay down a base backup, write the recovery settings, bring the
cluster up and let PostgreSQL replay archived WAL (fetched by ``drfleet wal fetch``) up to
the target, then promote.

Targets (``--at``): ``latest`` (everything archived), an LSN (``0/3000060``: stop after
the record at that LSN), or a time (ISO 8601; naive times are UTC: stop after the last
commit at or before it). The base backup used is the newest one that ends before the
target (or the one named). Before anything is written, the archive is checked from the
base backup's start segment: a gap the recovery would have to cross raises WalGap.

The restored cluster does not archive (``archive_mode = off``) unless asked to, so a
drill or a restore beside the primary never writes into the primary's archive.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drfleet import settings
from drfleet.pitr import cluster
from drfleet.pitr.errors import InvalidRecoveryTarget, NoBaseBackup, TargetDirNotEmpty, WalGap
from drfleet.pitr.walnames import Segment, format_lsn, parse_lsn, segment_of_lsn
from drfleet.plan.models import Plan


@dataclass(frozen=True)
class RecoveryTarget:
    kind: str                      # "latest" | "lsn" | "time"
    lsn: int | None = None
    time: datetime | None = None

    def describe(self) -> str:
        if self.kind == "lsn":
            return f"lsn {format_lsn(self.lsn)}"
        if self.kind == "time":
            return f"time {self.time.isoformat()}"
        return "latest"


def parse_target(text: str | None) -> RecoveryTarget:
    """``latest``/None, an LSN or an ISO 8601 time. Raises InvalidRecoveryTarget."""
    if text is None or text.strip().lower() in ("", "latest"):
        return RecoveryTarget("latest")
    text = text.strip()
    if "/" in text:
        return RecoveryTarget("lsn", lsn=parse_lsn(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRecoveryTarget(f"{text!r} is neither 'latest', an LSN nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return RecoveryTarget("time", time=moment.astimezone(timezone.utc))


def wal_executable() -> str:
    """How PostgreSQL calls drfleet: $DRFLEET_WAL_EXECUTABLE, else ``drfleet`` on PATH or
    beside this interpreter."""
    configured = settings.WAL_EXECUTABLE.get()
    if configured:
        return configured
    beside = Path(sys.executable).with_name("drfleet")
    return shutil.which("drfleet") or str(beside)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def wal_command(verb: str, plan_path: str, dataset: str, location: str | None = None) -> str:
    """``{drfleet} wal push|fetch --plan P --dataset D [--from LOCATION]`` followed by
    %p / %f %p (``--from``: fetch from that location's copy of the archive)."""
    import shlex
    args = "%p" if verb == "push" else "%f %p"
    source = f"--from {shlex.quote(location)} " if location and verb == "fetch" else ""
    return (f"{wal_executable()} wal {verb} --plan {shlex.quote(os.path.abspath(plan_path))} "
            f"--dataset {shlex.quote(dataset)} {source}{args}")


def choose_base_backup(plan: Plan, dataset: str, target: RecoveryTarget, backup_id: str | None = None,
                       location: str | None = None):
    """The base backup (BackupRecord) to restore from (at ``location``, default home).
    Raises NoBaseBackup."""
    from drfleet.pitr.basebackup import list_base_backups
    backups = list_base_backups(plan, dataset, location=location)
    if backup_id:
        chosen = [r for r in backups if r.backup_id == backup_id]
        if not chosen:
            raise NoBaseBackup(f"{backup_id} is not a base backup of {dataset}", dataset=dataset, backup_id=backup_id)
        return chosen[0]
    if target.kind == "time":
        backups = [r for r in backups if r.manifest.finished_at <= target.time]
    elif target.kind == "lsn":
        backups = [r for r in backups if parse_lsn(r.manifest.source_position["stop_lsn"]) <= target.lsn]
    if not backups:
        raise NoBaseBackup(f"no base backup of {dataset} ends before {target.describe()}", dataset=dataset)
    return backups[-1]


def check_reachable(plan: Plan, dataset: str, manifest: Any, target: RecoveryTarget,
                    location: str | None = None) -> dict[str, Any]:
    """Raise WalGap unless the archive (at ``location``, default home) holds every segment
    recovery from ``manifest`` to ``target`` needs (as far as the archive can tell).
    Returns what it found."""
    from drfleet.pitr.archive import reachable_end, scan_archive
    from drfleet.pitr.wal import read_record
    from drfleet.pitr.walcopy import wal_store

    store = wal_store(plan, dataset, location)
    pos = manifest.source_position
    state = scan_archive(plan, dataset, store=store)
    start = Segment.parse(pos["start_wal"], state.segment_size)
    stop = Segment.parse(pos["stop_wal"], state.segment_size)
    end = reachable_end(state, start)
    facts = {"dataset": dataset, "backup_id": manifest.backup_id, "start_wal": start.name,
             "target": target.describe()}
    if end is None or end.segno < stop.segno:
        raise WalGap("the archive lacks WAL this base backup needs to become consistent",
                     first_missing=(start if end is None else end.next()).name, **facts)
    newest = state.newest()
    if target.kind == "lsn":
        needed = segment_of_lsn(target.lsn, end.timeline, state.segment_size)
        if needed.segno > end.segno:
            raise WalGap(f"recovery to {target.describe()} needs {needed.name}, but the archive has a gap "
                         f"after {end.name}" if newest and newest.segno > end.segno else
                         f"recovery to {target.describe()} needs {needed.name}, which is not archived (yet)",
                         last_reachable=end.name, **facts)
    elif newest is not None and (newest.timeline, newest.segno) != (end.timeline, end.segno):
        # segments exist beyond a gap; a time target or "latest" would stop at the gap
        last = read_record(store, dataset, end.name)
        if target.kind == "latest" or last.pushed_at < target.time:
            raise WalGap(f"recovery to {target.describe()} would have to cross a gap after {end.name}",
                         last_reachable=end.name, newest_archived=newest.name,
                         last_reachable_archived_at=last.pushed_at.isoformat(), **facts)
    return {"start_wal": start.name, "reachable_end": end.name}


def lay_down(plan: Plan, record: Any, data_dir: str) -> int:
    """Extract base backup ``record`` into ``data_dir`` (new or empty), owned by the server
    user, mode 0700. Returns bytes restored. Raises TargetDirNotEmpty and the data path's
    integrity errors (the directory is then removed again)."""
    from drfleet.datapath.locations import store_for
    from drfleet.datapath.reading import BackupReader, data_key_for

    if (record.manifest.labels or {}).get("method") == "files":  # file-level: chain-aware
        from drfleet.pitr.physical_restore import lay_down_physical
        return lay_down_physical(plan, record, data_dir)["bytes"]
    path = Path(data_dir)
    if path.exists() and any(path.iterdir()):
        raise TargetDirNotEmpty(f"{data_dir} is not empty", data_dir=data_dir)
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    manifest = record.manifest
    reader = BackupReader(store_for(plan, record.location), manifest, data_key_for(plan, manifest))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                tar.extract(member, path, filter="data")
        reader.finish()
        for sub in ("pg_wal/archive_status",):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in ("postmaster.pid", "postmaster.opts"):
            (path / stale).unlink(missing_ok=True)
        os.chmod(path, 0o700)
        cluster.chown_tree(path)
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        raise
    return manifest.plaintext_size


def write_settings(data_dir: str, settings: dict[str, Any], signal_file: str) -> None:
    """Append ``settings`` to postgresql.auto.conf (later lines win) and create
    ``signal_file`` (recovery.signal or standby.signal)."""
    lines = ["", "# written by drfleet (point-in-time recovery)"]
    for key, value in settings.items():
        rendered = str(value).lower() if isinstance(value, bool) else (
            str(value) if isinstance(value, int) else _quote(str(value)))
        lines.append(f"{key} = {rendered}")
    conf = Path(data_dir) / "postgresql.auto.conf"
    with open(conf, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    (Path(data_dir) / signal_file).touch()
    cluster.chown_tree(data_dir)


def recovery_settings(plan_path: str, dataset: str, target: RecoveryTarget, *, port: int,
                      socket_dir: str, keep_archiving: bool = False, location: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "restore_command": wal_command("fetch", plan_path, dataset, location),
        "recovery_target_timeline": "latest",
        "port": port, "listen_addresses": "127.0.0.1", "unix_socket_directories": socket_dir,
    }
    if not keep_archiving:
        settings["archive_mode"] = "off"
    if target.kind == "lsn":
        settings["recovery_target_lsn"] = format_lsn(target.lsn)
    elif target.kind == "time":
        settings["recovery_target_time"] = target.time.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    if target.kind != "latest":
        settings["recovery_target_inclusive"] = True
        settings["recovery_target_action"] = "promote"
    return settings


def restore_to(plan: Plan, source: str, data_dir: str, at: str | None = "latest", *,
               port: int | None = None, plan_path: str | None = None, start: bool = True,
               keep_archiving: bool = False, timeout: float = 3600.0, delta: bool = False,
               workers: int = 2, location: str | None = None) -> dict[str, Any]:
    """Restore ``source`` (a dataset, ``DATASET/BACKUP_ID`` or a base backup id) into
    ``data_dir`` as it was at ``at`` and, with ``start``, bring it up as a primary. With
    ``location``, the base backup and the WAL come from that location's copies (the home
    region lost); the default is the home store.

    Returns a summary: backup id, target, port, seconds to lay down and to accept
    connections. Raises InvalidRecoveryTarget, NoBaseBackup, WalGap (before writing
    anything), TargetDirNotEmpty, and ClusterStartFailed (with the server log's tail)
    when recovery stops short of the target.

    A file-level base backup (``labels.method: files``) is restored with its chain by
    ``workers`` workers; ``delta`` restores it into the stopped data directory of the same
    cluster, writing only the files that differ (``pitr.physical_restore``).
    """
    started = time.monotonic()
    dataset, backup_id = _split_source(plan, source)
    target = parse_target(at)
    record = choose_base_backup(plan, dataset, target, backup_id, location)
    found = check_reachable(plan, dataset, record.manifest, target, location)
    plan_path = plan_path or settings.PLAN.get()
    if not plan_path:
        raise InvalidRecoveryTarget("the restored cluster's restore_command needs the plan file",
                                    hint="pass --plan PLAN (or set DRFLEET_PLAN)")
    port = port or _free_port()
    physical: dict[str, Any] = {}
    if (record.manifest.labels or {}).get("method") == "files":
        from drfleet.pitr.physical_restore import lay_down_physical
        physical = lay_down_physical(plan, record, data_dir, delta=delta, workers=workers)
        size = physical.pop("bytes")
    else:
        size = lay_down(plan, record, data_dir)
    laid = time.monotonic() - started
    write_settings(data_dir, recovery_settings(plan_path, dataset, target, port=port,
                                               socket_dir=os.path.abspath(data_dir),
                                               keep_archiving=keep_archiving, location=location),
                   "recovery.signal")
    summary = {"status": "laid-down", "dataset": dataset, "backup_id": record.backup_id,
               "location": record.location,
               "target": target.describe(), "data_dir": os.path.abspath(data_dir), "port": port,
               "bytes": size, "seconds_lay_down": round(laid, 3), **found, **physical}
    if start:
        up = cluster.start(data_dir, port, until="primary", timeout=timeout)
        summary.update(status="recovered", seconds_to_accepting=round(time.monotonic() - started, 3),
                       seconds_recovery=round(up, 3))
    return summary


def _split_source(plan: Plan, source: str) -> tuple[str, str | None]:
    if "/" in source:
        dataset, backup_id = source.split("/", 1)
        plan.dataset(dataset)
        return dataset, backup_id
    if source in plan.datasets:
        return source, None
    from drfleet.datapath.catalog import find_backup
    record = find_backup(plan, source)
    return record.dataset, record.backup_id


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
