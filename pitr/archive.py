"""What the WAL archive of a dataset holds: gaps, timeline breaks, and WAL retention.

``scan_archive`` lists records only (cheap: one listing). ``check_archive`` reports
missing segments between the first and last archived segment of each timeline, timelines
without a history file, and branches whose switch point the parent timeline's archive
does not reach. ``reachable_end`` walks from a base backup's start segment as recovery
would (following newer timelines at their switch points) and stops before the first
missing segment. ``wal_needed_from``/``prune_wal`` are WAL retention: a segment is
deleted only when no kept base backup needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from drfleet.pitr.walnames import DEFAULT_SEGMENT_SIZE, Segment, is_segment, parse_history, segment_of_lsn
from drfleet.plan.models import Plan
from drfleet.providers.storage import Store


@dataclass
class ArchiveState:
    """The archived files of one dataset, by kind."""

    dataset: str
    segment_size: int = DEFAULT_SEGMENT_SIZE
    segments: dict[int, set[int]] = field(default_factory=dict)      # timeline -> segnos
    histories: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # timeline -> entries
    other: list[str] = field(default_factory=list)                    # .backup, .partial

    def has(self, segment: Segment) -> bool:
        return segment.segno in self.segments.get(segment.timeline, ())

    def newest(self) -> Segment | None:
        best = None
        for tli, segnos in self.segments.items():
            if segnos:
                candidate = Segment(tli, max(segnos), self.segment_size)
                if best is None or (candidate.timeline, candidate.segno) > (best.timeline, best.segno):
                    best = candidate
        return best


def scan_archive(plan: Plan, dataset: str, *, store: Store | None = None,
                 read_histories: bool = True) -> ArchiveState:
    """List the archive of ``dataset`` (home store unless ``store``). History files are
    fetched and parsed when ``read_histories`` (they are small)."""
    from drfleet.pitr.wal import _home_store, list_records, read_wal

    store = store or _home_store(plan, dataset)
    state = ArchiveState(dataset)
    sizes_seen = None
    for name, _ in list_records(store, dataset):
        if is_segment(name):
            segment = Segment.parse(name, state.segment_size)
            state.segments.setdefault(segment.timeline, set()).add(segment.segno)
            if sizes_seen is None:
                from drfleet.pitr.wal import read_record
                sizes_seen = read_record(store, dataset, name).plaintext_size
                if sizes_seen != state.segment_size:
                    return _rescan(plan, dataset, store, sizes_seen, read_histories)
        elif name.endswith(".history"):
            state.histories[int(name[:8], 16)] = (
                parse_history(read_wal(plan, dataset, name, store=store).decode()) if read_histories else [])
        else:
            state.other.append(name)
    return state


def _rescan(plan: Plan, dataset: str, store: Store, size: int, read_histories: bool) -> ArchiveState:
    """Scan again with a non-default segment size (clusters made with initdb --wal-segsize)."""
    from drfleet.pitr.wal import list_records, read_wal
    state = ArchiveState(dataset, segment_size=size)
    for name, _ in list_records(store, dataset):
        if is_segment(name):
            segment = Segment.parse(name, size)
            state.segments.setdefault(segment.timeline, set()).add(segment.segno)
        elif name.endswith(".history"):
            state.histories[int(name[:8], 16)] = (
                parse_history(read_wal(plan, dataset, name, store=store).decode()) if read_histories else [])
        else:
            state.other.append(name)
    return state


def _switch_point(state: ArchiveState, child: int) -> tuple[int, int] | None:
    """(parent timeline, switch LSN) where ``child`` branched off, from its history file."""
    entries = state.histories.get(child)
    return entries[-1] if entries else None


def reachable_end(state: ArchiveState, start: Segment) -> Segment | None:
    """The last segment recovery from ``start`` can replay without a gap, following newer
    timelines at their switch points (recovery_target_timeline = latest). None when even
    ``start`` is missing."""
    if not state.has(start):
        return None
    current = start
    while True:
        branch = _next_branch(state, current.timeline, current.segno)
        if branch is not None:
            child, switch_seg = branch
            on_child = Segment(child, max(switch_seg, current.segno), state.segment_size)
            if state.has(on_child):
                current = on_child
                continue
        if not state.has(current.next()):
            return current
        current = current.next()


def _next_branch(state: ArchiveState, timeline: int, segno: int) -> tuple[int, int] | None:
    """The newest timeline branching from ``timeline`` at or before segment ``segno + 1``."""
    best = None
    for child in state.histories:
        point = _switch_point(state, child)
        if point and point[0] == timeline:
            switch_seg = point[1] // state.segment_size
            if switch_seg <= segno + 1 and (best is None or child > best[0]):
                best = (child, switch_seg)
    return best


def check_archive(plan: Plan, dataset: str, *, store: Store | None = None) -> dict[str, Any]:
    """A report of the archive: per timeline the first/last segment and count, the gaps
    (missing ranges), timeline problems, and ``ok``. Never raises for what it finds."""
    state = scan_archive(plan, dataset, store=store)
    timelines, gaps, problems = {}, [], []
    for tli in sorted(state.segments):
        segnos = sorted(state.segments[tli])
        timelines[tli] = {"first": Segment(tli, segnos[0], state.segment_size).name,
                          "last": Segment(tli, segnos[-1], state.segment_size).name, "segments": len(segnos)}
        for before, after in zip(segnos, segnos[1:]):
            if after != before + 1:
                gaps.append({"timeline": tli, "after": Segment(tli, before, state.segment_size).name,
                             "before": Segment(tli, after, state.segment_size).name,
                             "missing": after - before - 1,
                             "first_missing": Segment(tli, before + 1, state.segment_size).name})
        if tli > 1 and tli not in state.histories:
            problems.append(f"timeline {tli} has segments but no {tli:08X}.history file")
    for child in sorted(state.histories):
        point = _switch_point(state, child)
        if not point:
            continue
        parent, lsn = point
        switch = segment_of_lsn(max(lsn - 1, 0), parent, state.segment_size)
        parent_segs = state.segments.get(parent, set())
        if parent_segs and max(parent_segs) < switch.segno:
            problems.append(f"timeline {child} branches from timeline {parent} in {switch.name}, "
                            f"but timeline {parent}'s archive ends at "
                            f"{Segment(parent, max(parent_segs), state.segment_size).name}")
    return {"dataset": dataset, "segment_size": state.segment_size, "timelines": timelines,
            "histories": sorted(state.histories), "gaps": gaps, "timeline_problems": problems,
            "ok": not gaps and not problems}


# --- retention ---------------------------------------------------------------------------

def _start_segment(manifest: Any) -> Segment:
    pos = manifest.source_position
    return Segment.parse(pos["start_wal"], int(pos.get("segment_size", DEFAULT_SEGMENT_SIZE)))


def wal_needed_from(plan: Plan, dataset: str, kept_base_backups: Iterable[Any]) -> str | None:
    """The oldest WAL segment any of ``kept_base_backups`` needs (their earliest
    ``start_wal``), or None when none is given (then nothing may be pruned).

    ``kept_base_backups``: Manifests, BackupRecords or backup ids (looked up in the home store).
    Base backups on any timeline count; a segment older than the result is needed by none.
    """
    oldest = None
    for item in kept_base_backups:
        manifest = _manifest_of(plan, dataset, item)
        if manifest.labels.get("type") != "basebackup":
            continue
        segment = _start_segment(manifest)
        if oldest is None or segment.segno < oldest.segno:
            oldest = segment
    return oldest.name if oldest else None


def _manifest_of(plan: Plan, dataset: str, item: Any) -> Any:
    if hasattr(item, "manifest"):
        return item.manifest
    if hasattr(item, "source_position"):
        return item
    from drfleet.datapath.catalog import find_backup
    return find_backup(plan, str(item), dataset=dataset).manifest


def prune_wal(plan: Plan, dataset: str, kept_base_backups: Iterable[Any], *, dry_run: bool = False,
              store: Store | None = None) -> dict[str, Any]:
    """Delete archived WAL that no kept base backup needs: segments (every timeline),
    ``.backup`` and ``.partial`` files older than ``wal_needed_from``, and leftover objects
    of failed uploads there. History files are always kept. Each record is deleted before
    its object, so no record ever names a missing object.

    With no kept base backup nothing is deleted (``{"kept_all": True}``). Returns counts
    and the names deleted (or that would be, with ``dry_run``).
    """
    from drfleet.pitr.wal import _home_store, list_objects, list_records, object_key, read_record, record_key

    store = store or _home_store(plan, dataset)
    needed = wal_needed_from(plan, dataset, list(kept_base_backups))
    if needed is None:
        return {"dataset": dataset, "kept_all": True, "needed_from": None, "deleted": [], "dry_run": dry_run}
    state = scan_archive(plan, dataset, store=store, read_histories=False)
    cutoff = Segment.parse(needed, state.segment_size).segno
    deleted = []
    for name, _ in list(list_records(store, dataset)):
        if name.endswith(".history"):
            continue
        segno = Segment.parse(name[:24], state.segment_size).segno
        if segno >= cutoff:
            continue
        deleted.append(name)
        if dry_run:
            continue
        record = read_record(store, dataset, name)
        store.delete(record_key(dataset, name))
        store.delete(object_key(dataset, name, record.object))
    leftovers = 0
    if not dry_run:
        for key in list(list_objects(store, dataset)):
            base = key.rsplit("/", 1)[-1]
            wal_name = base.split(".", 1)[0].upper()
            if is_segment(wal_name) and Segment.parse(wal_name, state.segment_size).segno < cutoff:
                store.delete(key)
                leftovers += 1
    return {"dataset": dataset, "kept_all": False, "needed_from": needed, "deleted": deleted,
            "leftover_objects_deleted": leftovers, "dry_run": dry_run}


def newest_recoverable_time(plan: Plan, dataset: str) -> float | None:
    """The newest moment a point-in-time restore of ``dataset`` reaches today (epoch
    seconds): the archive time of the last segment replayable without a gap from the newest
    base backup whose start segment is archived. None without a base backup or WAL.
    (Exposed for the DR report's RPO, issue 15.)"""
    from drfleet.pitr.basebackup import list_base_backups
    from drfleet.pitr.wal import _home_store, read_record

    store = _home_store(plan, dataset)
    state = scan_archive(plan, dataset, store=store)
    best = None
    for record in list_base_backups(plan, dataset):
        end = reachable_end(state, _start_segment(record.manifest))
        if end is not None and (best is None or (end.timeline, end.segno) > (best.timeline, best.segno)):
            best = end
    return read_record(store, dataset, best.name).pushed_at.timestamp() if best else None
