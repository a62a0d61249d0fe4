"""Size anomaly detection: a backup far smaller or far larger than the recent backups of
the same dataset and policy is flagged, because a 29-byte dump that "succeeded" is the
classic silent failure.

With the dataset's ``size_anomaly_ratio`` r (0 < r < 1, default 0.5) and the median
plaintext size m of up to ``HISTORY`` earlier backups of the same dataset and policy, a
backup of size s is flagged when ``s < m * r`` (far smaller) or ``s > m / r`` (far larger).
Fewer than ``MIN_HISTORY`` earlier backups: not enough to judge, nothing is flagged.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from drfleet.backup_format.manifest import Manifest
from drfleet.plan.models import Plan

HISTORY = 10
MIN_HISTORY = 3


@dataclass(frozen=True)
class SizeCheck:
    dataset: str
    policy: str
    backup_id: str
    size: int
    baseline: float | None  # median size of the earlier backups; None without enough history
    ratio: float
    history: int
    flagged: bool
    direction: str = ""  # "smaller" | "larger" when flagged

    def describe(self) -> str:
        if self.baseline is None:
            return f"size {self.size} B not judged: only {self.history} earlier backup(s) of {self.policy}"
        if not self.flagged:
            return f"size {self.size} B within range of the recent median {self.baseline:.0f} B"
        bound = self.baseline * self.ratio if self.direction == "smaller" else self.baseline / self.ratio
        return (f"size anomaly: {self.size} B is far {self.direction} than the median {self.baseline:.0f} B "
                f"of the last {self.history} {self.policy} backups (bound {bound:.0f} B, ratio {self.ratio})")


def check_size(plan: Plan, manifest: Manifest, earlier: list[Manifest]) -> SizeCheck:
    """Judge ``manifest`` against ``earlier`` backups (any order; only those of the same
    dataset and policy created before it count, the newest ``HISTORY`` of them)."""
    ratio = plan.dataset(manifest.dataset).size_anomaly_ratio
    same = sorted((m for m in earlier if m.dataset == manifest.dataset and m.policy == manifest.policy
                   and m.backup_id != manifest.backup_id and m.created_at < manifest.created_at),
                  key=lambda m: m.created_at)[-HISTORY:]
    size = manifest.plaintext_size
    base = dict(dataset=manifest.dataset, policy=manifest.policy, backup_id=manifest.backup_id,
                size=size, ratio=ratio, history=len(same))
    if len(same) < MIN_HISTORY:
        return SizeCheck(baseline=None, flagged=False, **base)
    median = float(statistics.median(m.plaintext_size for m in same))
    if size < median * ratio:
        return SizeCheck(baseline=median, flagged=True, direction="smaller", **base)
    if size > median / ratio:
        return SizeCheck(baseline=median, flagged=True, direction="larger", **base)
    return SizeCheck(baseline=median, flagged=False, **base)


def size_check_for(plan: Plan, dataset: str, backup_id: str, location: str) -> SizeCheck | None:
    """Judge one backup against the other backups of its dataset in the same location;
    None when its manifest cannot be read there (the verification reports that)."""
    from drfleet.datapath.catalog import list_backups

    listing = list_backups(plan, dataset, locations=[location])
    manifests = [r.manifest for r in listing.backups]
    current = next((m for m in manifests if m.backup_id == backup_id), None)
    return check_size(plan, current, manifests) if current is not None else None
