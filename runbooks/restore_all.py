"""Whole-system restore (the second seed's ``restore.sh BACKUP --all``): every dataset of a
service, a region or the whole plan restored to one point in time, in dependency order.

``restore_plan`` decides, touching nothing (``--dry-run`` prints it): for each dataset the
newest committed backup taken at or before ``at`` (default: now; point-in-time chain parts
are left out, an incremental brings its chain), and its target:

* ``service=S``: the targets of ``recovery.services.S.restore`` (``host:`` targets are
  refused: a new server is the server-failure runbook's job);
* otherwise a database is restored into its own connection (``env:``/``file:`` reference)
  and a files dataset into ``to/DATASET`` (``to`` is required when files are included).

Order: databases before files (applications read their data before their assets), then
the plan's ``priority``, then name. ``restore_all`` runs the steps in that order, calling
``progress`` before and after each, stops at the first failure (later datasets may depend
on it) and returns one summary: restored, failed, not started, seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from drfleet.datapath.catalog import list_backups
from drfleet.datapath.errors import BackupNotFound, DataPathError
from drfleet.errors import error_text
from drfleet.plan.models import Plan

PITR_LABELS = ("basebackup", "oplog-slice")
KIND_ORDER = {"postgres": 0, "mongodb": 0, "redis": 1, "files": 2}


class RestoreAllInvalid(DataPathError):
    hint = "name a service (--service) or region (--region) of the plan, and give --to DIR for files datasets"


@dataclass
class RestoreStep:
    dataset: str
    kind: str
    backup_id: str | None
    location: str | None
    created_at: str | None
    target: str
    status: str = "planned"
    seconds: float | None = None
    error: str | None = None


@dataclass
class RestoreAll:
    at: str
    scope: str
    steps: list[RestoreStep] = field(default_factory=list)

    def summary(self) -> dict:
        counts = {s: sum(1 for x in self.steps if x.status == s) for s in ("restored", "failed", "not-started",
                                                                           "planned")}
        return {"at": self.at, "scope": self.scope, **counts,
                "seconds": round(sum(x.seconds or 0 for x in self.steps), 3),
                "steps": [vars(s) for s in self.steps]}


def _at(text: str | None) -> datetime:
    if not text or text == "latest":
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RestoreAllInvalid(f"--at {text!r} is not a time", hint="give an ISO time, e.g. 2026-11-21T03:15:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def restore_plan(plan: Plan, *, service: str | None = None, region: str | None = None, at: str | None = None,
                 to: str | None = None) -> RestoreAll:
    """What a whole-system restore would do. Raises RestoreAllInvalid (unknown service or
    region, both given, a ``host:`` target, files without ``to``), RecoveryConfigInvalid,
    and BackupNotFound naming every dataset without a backup at or before ``at``."""
    if service and region:
        raise RestoreAllInvalid("give --service or --region, not both")
    when = _at(at)
    targets: dict[str, str] = {}
    if service:
        from drfleet.plan.recovery import recovery_config
        svc = recovery_config(plan).service(service)
        for name, target in svc.restore.items():
            if target.startswith("host:"):
                raise RestoreAllInvalid(f"{name} restores onto a host ({target})", dataset=name,
                                        hint="restore a lost server with `drfleet runbook start server-failure`")
            targets[name] = target
        scope = f"service {service}"
    else:
        if region and region not in plan.region_names:
            raise RestoreAllInvalid(f"region {region!r} is not in the plan", regions=", ".join(plan.region_names))
        for name, ds in plan.datasets.items():
            if region and ds.region != region:
                continue
            if ds.kind == "files":
                if not to:
                    raise RestoreAllInvalid(f"files dataset {name} needs --to DIR (restored into DIR/{name})",
                                            dataset=name)
                targets[name] = f"{to.rstrip('/')}/{name}"
            else:
                ref = ds.connection
                targets[name] = f"env:{ref.env}" if ref.env else f"file:{ref.file}"
        scope = f"region {region}" if region else "the whole plan"
    order = sorted(targets, key=lambda n: (KIND_ORDER[plan.dataset(n).kind], plan.dataset(n).priority, n))
    result, missing = RestoreAll(at=when.isoformat(), scope=scope), []
    listing = list_backups(plan, None if len(order) > 1 else (order[0] if order else None))
    for name in order:
        candidates = [b for b in listing.backups if b.dataset == name and b.manifest.created_at <= when
                      and (b.manifest.labels or {}).get("type") not in PITR_LABELS]
        if not candidates:
            missing.append(name)
            continue
        best = max(candidates, key=lambda b: (b.manifest.created_at, b.backup_id))
        result.steps.append(RestoreStep(name, plan.dataset(name).kind, best.backup_id, best.location,
                                        best.manifest.created_at.isoformat(), targets[name]))
    if missing:
        raise BackupNotFound(f"no backup at or before {when.isoformat()} of: {', '.join(missing)}",
                             datasets=missing, problems=listing.problems or None)
    return result


def restore_all(plan: Plan, planned: RestoreAll, *, progress: Callable[[int, RestoreStep], None] = lambda i, s: None
                ) -> RestoreAll:
    """Run ``planned`` in order (see the module doc); never raises for a failed restore."""
    from drfleet.datapath.restore import restore_backup

    failed = False
    for i, step in enumerate(planned.steps):
        if failed:
            step.status = "not-started"
            continue
        step.status = "restoring"
        progress(i, step)
        started = time.monotonic()
        try:
            options = {"clean": True} if step.kind == "postgres" else None
            restore_backup(plan, f"{step.dataset}/{step.backup_id}", step.target, location=step.location,
                           options=options)
            step.status = "restored"
        except Exception as exc:  # noqa: BLE001 - the summary says what failed and why
            step.status, step.error, failed = "failed", error_text(exc)[-500:], True
        step.seconds = round(time.monotonic() - started, 3)
        progress(i, step)
    return planned
