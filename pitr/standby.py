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
drfleet runs as root. Creating a standby on another plan host over SSH is not built: the
error names the command to run on that host (``drfleet standby create ... --on local``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from plan.models import Plan


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
    from pitr.standby_impl import create_standby as _create
    return _create(plan, dataset, data_dir=data_dir, host=host, port=port, backup_id=backup_id,
                   primary_conninfo=primary_conninfo, start=start, timeout=timeout)


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
    from pitr.standby_impl import promote_standby as _promote
    return _promote(plan, dataset, data_dir=data_dir, host=host, timeout=timeout)


def list_standbys(dataset: str) -> list[StandbyInfo]:
    """The registered standbys of ``dataset``, oldest first (empty when none)."""
    from pitr.standby_impl import list_standbys as _list
    return _list(dataset)
