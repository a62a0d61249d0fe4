"""Which backups retention keeps: a pure decision, no I/O.

``decide(backups, plan, now)`` takes the committed backups of one storage location (each a
``Candidate``: dataset, id, policy, creation time, parents, and whether it is verified or on
legal hold) and returns a ``Verdict`` per backup: keep or delete, with every reason. The
executor (``datapath.prune``) gathers the inputs and does the deleting; keeping this part pure
makes weeks of simulated backups a fast, exact test.

The rules, for each location separately:

* A backup belongs to the policy named in its manifest. The policy's ``keep`` decides:
  a time window keeps backups whose age (``now - created_at``) is at most the window;
  ``N versions`` keeps the newest N backups of that (dataset, policy); ``forever`` and
  ``all versions`` keep every one. A backup whose policy is no longer in the plan is kept
  (deleting it is an operator's decision, not retention's).
* Several policies on one dataset combine grandfather-father-son: each keeps its own series
  (hourly for a day, daily for a month, monthly forever) and a backup kept by any rule stays.
* Never deleted, whatever the policy says:
  - a backup on legal hold;
  - the newest verified backup of each dataset (newest by creation time among this
    location's backups whose id has a passing verification anywhere); if none of them is
    verified, the newest committed backup of the dataset here, so a dataset whose backups
    stopped, or were never verified, always keeps its latest recovery point;
  - a backup that a kept backup needs: any backup named in the ``parents`` of a kept
    backup (incrementals), transitively.

Deleting a backup that retention deletes never changes the verdict on another backup, so a
prune interrupted half-way and run again reaches the same surviving set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from drfleet.plan.models import Plan
from drfleet.plan.retention import Retention

HOLD = "on legal hold"


@dataclass(frozen=True)
class Candidate:
    """One committed backup at one location, as retention sees it."""

    dataset: str
    backup_id: str
    policy: str
    created_at: datetime
    parents: tuple[str, ...] = ()
    verified: bool = False
    held: bool = False


@dataclass
class Verdict:
    """Keep or delete one backup, and why (every rule that applied, in rule order)."""

    backup: Candidate
    keep: bool = False
    reasons: list[str] = field(default_factory=list)

    def _keep(self, reason: str) -> None:
        self.keep = True
        self.reasons.append(reason)


@dataclass
class Decision:
    """Verdicts for every backup handed to ``decide``, oldest first."""

    verdicts: list[Verdict]

    @property
    def kept(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.keep]

    @property
    def deleted(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.keep]


def decide(backups: Iterable[Candidate], plan: Plan, now: datetime) -> Decision:
    """Apply the plan's retention to ``backups`` (all at one location) as of ``now``
    (timezone-aware). Raises ValueError for a naive ``now``; never does I/O."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must carry a timezone (UTC)")
    keeps = {(name, p.name): p.keep for name, ds in plan.datasets.items() for p in ds.policies}
    verdicts = [Verdict(b) for b in sorted(backups, key=lambda b: (b.created_at, b.backup_id))]
    series: dict[tuple[str, str], list[Verdict]] = {}
    by_dataset: dict[str, list[Verdict]] = {}
    for v in verdicts:
        series.setdefault((v.backup.dataset, v.backup.policy), []).append(v)
        by_dataset.setdefault(v.backup.dataset, []).append(v)

    for v in verdicts:
        if v.backup.held:
            v._keep(HOLD)
    for dataset, members in by_dataset.items():
        verified = [v for v in members if v.backup.verified]
        if verified:
            verified[-1]._keep(f"newest verified backup of {dataset}")
        else:
            members[-1]._keep(f"newest backup of {dataset} (none of its backups here is verified)")
    for (dataset, policy), members in series.items():
        keep = keeps.get((dataset, policy))
        if keep is None:
            for v in members:
                v._keep(f"policy {policy} is not in the plan; an operator decides")
        else:
            _apply_policy(policy, keep, members, now)
    _keep_parents(verdicts)
    return Decision(verdicts)


def _apply_policy(policy: str, keep: Retention, members: list[Verdict], now: datetime) -> None:
    """``members`` is one (dataset, policy) series, oldest first."""
    if keep.forever:
        for v in members:
            v._keep(f"policy {policy} keeps {keep.text}")
        return
    if keep.keep_versions is not None:
        count = len(members)
        for index, v in enumerate(members):
            rank = count - index  # 1 = newest
            if rank <= keep.keep_versions:
                v._keep(f"policy {policy}: version {rank} of the newest {keep.keep_versions}")
            else:
                v.reasons.append(f"policy {policy}: version {rank}, beyond the newest {keep.keep_versions}")
        return
    for v in members:
        age = (now - v.backup.created_at).total_seconds()
        if age <= keep.keep_seconds:
            v._keep(f"policy {policy}: within {keep.text}")
        else:
            v.reasons.append(f"policy {policy}: older than {keep.text} ({_age(age)} old)")


def _keep_parents(verdicts: list[Verdict]) -> None:
    """Keep every backup a kept backup names as a parent, until nothing changes."""
    by_key = {(v.backup.dataset, v.backup.backup_id): v for v in verdicts}
    work = [v for v in verdicts if v.keep]
    while work:
        child = work.pop()
        for parent_id in child.backup.parents:
            parent = by_key.get((child.backup.dataset, parent_id))
            if parent is None:
                continue
            was_kept = parent.keep
            parent._keep(f"needed by incremental {child.backup.backup_id}")
            if not was_kept:
                work.append(parent)


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} s"
