"""Prune on real filesystem stores and a real Redis: weeks of simulated backups, dry run,
manifests before objects, audit, per-location retention, a store failing mid-prune, two
prunes at once, a lost lock, orphans."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from drfleet.backup_format.layout import manifest_key
from drfleet.datapath.locations import store_for
from drfleet.datapath.prune import PruneBusy, PruneLockLost, locations_of_region, prune_location
from drfleet.providers.storage import StoreUnavailable, innermost
from drfleet.state import audit, verifications
from tests.datapath.retention_builders import (
    FailingStore,
    RecordingStore,
    committed,
    plan_with,
    put_backup,
    with_objects,
)

T0 = datetime(2024, 3, 4, tzinfo=timezone.utc)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
HOME = "eu-central-store"

POLICIES = """\
- {name: six-hourly, trigger: every 6 hours, keep: 2 days, copies: [home-region]}
- {name: daily, trigger: "daily at 02:00", keep: 3 versions, copies: [home-region, offsite]}
"""


@pytest.fixture
def state(redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def plan(tmp_path):
    return plan_with(tmp_path / "plan", POLICIES)


def deletions(state):
    return [(r["details"]["backup_id"], r["details"]["location"], r["details"]["reasons"])
            for r in audit.entries(action="prune.delete", client=state)]


def test_three_weeks_of_backups_pruned_daily_keep_exactly_what_the_policies_say(plan, state):
    store = store_for(plan, HOME)
    made: list[tuple[str, str, datetime]] = []
    now = T0
    while now < T0 + 21 * DAY:
        if now.hour % 6 == 0:
            made.append((put_backup([store], "site", "six-hourly", now), "six-hourly", now))
        if now.hour == 2:
            made.append((put_backup([store], "site", "daily", now), "daily", now))
        if now.hour == 3:
            report = prune_location(plan, HOME, now=now, client=state)
            dailies = sorted((m for m in made if m[1] == "daily"), key=lambda m: m[2])[-3:]
            expected = {m[0] for m in made if m[1] == "six-hourly" and now - m[2] <= 2 * DAY}
            expected |= {m[0] for m in dailies}
            assert committed(store) == expected, now
            assert with_objects(store) == expected, now
            assert not report.problems
        now += HOUR
    gone = {m[0] for m in made} - committed(store)
    assert len(gone) == 91  # of 105 made; 9 six-hourly + 3 daily kept, 2 made after the last prune
    recorded = deletions(state)
    assert {r[0] for r in recorded} == gone and len(recorded) == len(gone)
    assert all(location == HOME and reasons.startswith("policy ") for _, location, reasons in recorded)


def test_dry_run_lists_what_would_go_and_why_and_touches_nothing(plan, state):
    store = store_for(plan, HOME)
    old = put_backup([store], "site", "six-hourly", T0)
    new = put_backup([store], "site", "six-hourly", T0 + 5 * DAY)
    report = prune_location(plan, HOME, now=T0 + 5 * DAY, dry_run=True, client=state)
    out = report.to_dict()
    assert out["deleted"] == [f"site/{old}"] and out["kept"] == 1
    verdict = {v["backup_id"]: v for v in out["verdicts"]}
    assert verdict[old]["keep"] is False and verdict[old]["reasons"] == ["policy six-hourly: older than 2 days (5.0 days old)"]
    assert verdict[new]["keep"] is True
    assert committed(store) == with_objects(store) == {old, new}
    assert deletions(state) == [] and state.keys("drfleet:lock:*") == []


def test_manifests_are_deleted_before_any_object_and_each_deletion_is_audited(plan, state):
    store = RecordingStore(store_for(plan, HOME))
    doomed = [put_backup([store], "site", "six-hourly", T0 + k * HOUR) for k in range(4)]
    put_backup([store], "site", "six-hourly", T0 + 10 * DAY)
    report = prune_location(plan, HOME, now=T0 + 10 * DAY, store=store, client=state)
    assert sorted(report.deleted) == sorted(f"site/{b}" for b in doomed)
    kinds = ["manifest" if "/manifests/" in k else "object" for k in store.deleted]
    assert kinds == ["manifest"] * 4 + ["object"] * 8
    assert {r[0] for r in deletions(state)} == set(doomed)


def test_each_location_keeps_what_the_policies_say_on_its_own(plan, state):
    home, offsite = store_for(plan, HOME), store_for(plan, "offsite")
    both = [put_backup([home, offsite], "site", "daily", T0 + k * DAY) for k in range(5)]
    home_only = put_backup([home], "site", "daily", T0 + 5 * DAY)
    for backup_id in both:
        verifications.record_result("site", backup_id, "offsite", depth="full", ok=True, client=state)
    now = T0 + 6 * DAY
    prune_location(plan, HOME, now=now, client=state)
    prune_location(plan, "offsite", now=now, client=state)
    assert committed(home) == {both[3], both[4], home_only}
    assert committed(offsite) == {both[2], both[3], both[4]}
    remaining = {(r.backup_id, r.location) for r in verifications.results("site", client=state)}
    assert remaining == {(both[2], "offsite"), (both[3], "offsite"), (both[4], "offsite")}


def test_the_newest_verified_backup_outlives_its_policy(plan, state):
    store = store_for(plan, HOME)
    verified = put_backup([store], "site", "six-hourly", T0)
    newer = [put_backup([store], "site", "six-hourly", T0 + k * DAY) for k in (1, 2, 9)]
    verifications.record_result("site", verified, HOME, depth="deep", ok=True, client=state)
    verifications.record_result("site", newer[0], HOME, depth="deep", ok=False, client=state)
    report = prune_location(plan, HOME, now=T0 + 9 * DAY, client=state)
    assert committed(store) == {verified, newer[2]}
    kept = {v.backup.backup_id: v.reasons for v in report.decisions["site"].kept}
    assert kept[verified][0] == "newest verified backup of site"


def test_a_store_failing_mid_prune_never_drops_below_retention_and_a_rerun_finishes(plan, state):
    healthy = store_for(plan, HOME)
    doomed = [put_backup([healthy], "site", "six-hourly", T0 + k * HOUR) for k in range(6)]
    keep = {put_backup([healthy], "site", "six-hourly", T0 + 10 * DAY + k * HOUR) for k in range(3)}
    now = T0 + 10 * DAY + 3 * HOUR

    # the store goes away after two manifests ...
    with pytest.raises(StoreUnavailable):
        prune_location(plan, HOME, now=now, client=state, store=FailingStore(healthy, allowed=2, only="/manifests/"))
    assert keep < committed(healthy) <= keep | set(doomed) and len(committed(healthy)) == 3 + 4
    assert len(deletions(state)) == 2  # the two that went, audited
    # ... and, on the next try, after every manifest but before most objects
    with pytest.raises(StoreUnavailable):
        prune_location(plan, HOME, now=now, client=state, store=FailingStore(healthy, allowed=3, only="/backups/"))
    assert committed(healthy) == keep
    left = with_objects(healthy) - keep  # objects without a manifest: not backups, but garbage
    assert len(left) >= 4

    report = prune_location(plan, HOME, now=now, client=state)
    assert committed(healthy) == with_objects(healthy) == keep
    assert state.hlen("drfleet:prune:pending:" + HOME) == 0
    assert report.orphans == sorted(f"site/{b}" for b in left)
    assert {r[0] for r in deletions(state)} == set(doomed)
    assert len(deletions(state)) == len(doomed)  # each deletion audited exactly once
    orphans = list(audit.entries(action="prune.orphan", client=state))
    assert {r["details"]["reason"] for r in orphans} == {"interrupted prune"}


def test_objects_of_a_killed_backup_go_only_after_the_grace_period(plan, state):
    store = store_for(plan, HOME)
    kept = put_backup([store], "site", "six-hourly", T0)
    killed = put_backup([store], "site", "six-hourly", T0 + HOUR)
    store.delete(manifest_key("site", killed))  # as if the writer died before its manifest
    grace = 3600
    prune_location(plan, HOME, now=T0 + 2 * HOUR, client=state, orphan_grace=grace)
    prune_location(plan, HOME, now=T0 + 2 * HOUR + timedelta(seconds=grace - 1), client=state, orphan_grace=grace)
    assert with_objects(store) == {kept, killed}
    report = prune_location(plan, HOME, now=T0 + 3 * HOUR, client=state, orphan_grace=grace)
    assert report.orphans == [f"site/{killed}"]
    assert with_objects(store) == committed(store) == {kept}
    [record] = audit.entries(action="prune.orphan", client=state)
    assert record["details"]["reason"] == "objects without a manifest"


def test_an_orphan_that_gets_its_manifest_is_not_removed(plan, state):
    store = store_for(plan, HOME)
    slow = put_backup([store], "site", "six-hourly", T0)
    manifest = store.get_bytes(manifest_key("site", slow))
    store.delete(manifest_key("site", slow))
    prune_location(plan, HOME, now=T0 + HOUR, client=state, orphan_grace=60)
    store.put_bytes(manifest_key("site", slow), manifest)  # a slow copy commits at last
    prune_location(plan, HOME, now=T0 + 2 * HOUR, client=state, orphan_grace=60)
    assert committed(store) == with_objects(store) == {slow}
    assert state.hlen("drfleet:prune:orphans:" + HOME) == 0


def test_an_unreadable_manifest_stops_pruning_of_that_dataset(plan, state):
    store = store_for(plan, HOME)
    old = put_backup([store], "site", "six-hourly", T0)
    put_backup([store], "site", "six-hourly", T0 + 5 * DAY)
    store.put_bytes("datasets/site/manifests/20240305T000000Z-00000000.json", b"{not json")
    report = prune_location(plan, HOME, now=T0 + 5 * DAY, client=state)
    assert old in committed(store) and report.deleted == []
    assert any("not valid JSON" in p for p in report.problems)
    assert report.problems[-1] == f"site: nothing of it was pruned at {HOME} (incomplete view)"


def test_an_oversized_manifest_is_refused_by_its_listed_size_and_never_read(plan, state, monkeypatch):
    from drfleet.datapath import catalog
    store = store_for(plan, HOME)
    put_backup([store], "site", "six-hourly", T0)
    big = "datasets/site/manifests/20240305T000000Z-00000000.json"
    store.put_bytes(big, b"{" + b" " * 4096 + b"}")
    monkeypatch.setattr(catalog, "MAX_MANIFEST_BYTES", 2048)
    reads = []
    real_get = type(store).get_bytes
    monkeypatch.setattr(type(store), "get_bytes",
                        lambda self, key, *a, **k: reads.append(key) or real_get(self, key, *a, **k))
    report = prune_location(plan, HOME, now=T0 + 5 * DAY, client=state)
    assert any("not read" in p for p in report.problems) and report.deleted == []
    assert big not in reads


def test_two_prunes_at_once_delete_no_more_than_retention_allows(plan, state):
    """A decides (b1 is the newest verified, b2 goes); before A deletes, a verification of
    b2 lands and B starts. Unlocked, B would keep b2 and delete b1, leaving no verified
    backup; with the lock, B decides only after A is done, on what A left."""
    store = store_for(plan, HOME)
    b1 = put_backup([store], "site", "six-hourly", T0)
    b2 = put_backup([store], "site", "six-hourly", T0 + DAY)
    b3 = put_backup([store], "site", "six-hourly", T0 + 10 * DAY)
    verifications.record_result("site", b1, HOME, depth="full", ok=True, client=state)
    now = T0 + 10 * DAY
    a_decided, a_go = threading.Event(), threading.Event()
    seen_by_b: list[set[str]] = []

    def pause_a(dataset, decision):
        a_decided.set()
        assert a_go.wait(30)

    def run_b():
        prune_location(plan, HOME, now=now, wait_seconds=30, client=redis.Redis.from_url(state_url),
                       on_decided=lambda ds, d: seen_by_b.append({v.backup.backup_id for v in d.verdicts}))

    state_url = f"redis://127.0.0.1:{state.connection_pool.connection_kwargs['port']}/0"
    a = threading.Thread(target=prune_location, args=(plan, HOME),
                         kwargs={"now": now, "client": redis.Redis.from_url(state_url), "on_decided": pause_a})
    a.start()
    assert a_decided.wait(30)
    verifications.record_result("site", b2, "offsite", depth="full", ok=True, client=state)
    b = threading.Thread(target=run_b)
    b.start()
    time.sleep(0.5)  # give B every chance to run if nothing stopped it
    assert seen_by_b == []
    a_go.set()
    a.join(30)
    b.join(30)
    assert seen_by_b == [{b1, b3}]
    assert committed(store) == {b1, b3}


def test_a_second_prune_that_will_not_wait_is_told_who_holds_the_lock(plan, state):
    store = store_for(plan, HOME)
    put_backup([store], "site", "six-hourly", T0)
    holding, release = threading.Event(), threading.Event()

    def hold(dataset, decision):
        holding.set()
        release.wait(30)

    first = threading.Thread(target=prune_location, args=(plan, HOME),
                             kwargs={"now": T0, "on_decided": hold, "client": redis.Redis.from_url(
                                 f"redis://127.0.0.1:{state.connection_pool.connection_kwargs['port']}/0")})
    first.start()
    try:
        assert holding.wait(30)
        with pytest.raises(PruneBusy) as busy:
            prune_location(plan, HOME, now=T0, client=state)
        assert busy.value.facts["location"] == HOME and ":" in busy.value.facts["holder"]
        assert prune_location(plan, HOME, now=T0, client=state, dry_run=True).dry_run  # dry runs need no lock
    finally:
        release.set()
        first.join(30)


def test_a_prune_that_lost_its_lock_stops_before_deleting(plan, state):
    store = store_for(plan, HOME)
    old = put_backup([store], "site", "six-hourly", T0)
    put_backup([store], "site", "six-hourly", T0 + 5 * DAY)

    def stall(dataset, decision):
        state.delete("drfleet:lock:prune:" + HOME)  # the TTL ran out while this prune stalled
        state.set("drfleet:lock:prune:" + HOME, "someone-else")

    with pytest.raises(PruneLockLost):
        prune_location(plan, HOME, now=T0 + 5 * DAY, client=state, lock_ttl=0.3, on_decided=lambda *a: (time.sleep(0.2), stall(*a)))
    assert old in committed(store)
    assert state.get("drfleet:lock:prune:" + HOME) == b"someone-else"


def test_a_region_prunes_its_own_locations_and_the_primary_the_regionless_offsite(plan):
    assert locations_of_region(plan, "eu-central") == ["eu-central-store", "offsite"]
    assert locations_of_region(plan, "us-east") == ["us-east-store"]


def test_a_region_prune_goes_on_past_a_failing_location_and_then_says_which(plan, state, monkeypatch):
    from drfleet.datapath import prune as prune_module
    from drfleet.datapath.prune import PruneIncomplete, prune_region

    home = store_for(plan, HOME)
    old = put_backup([home], "site", "six-hourly", T0)
    put_backup([home], "site", "six-hourly", T0 + 5 * DAY)
    real_store_for = prune_module.store_for

    def offsite_down(plan_, location, **options):
        if location == "offsite":
            raise StoreUnavailable("offsite", None, "connection refused (injected)")
        return real_store_for(plan_, location, **options)

    monkeypatch.setattr(prune_module, "store_for", offsite_down)
    with pytest.raises(PruneIncomplete) as err:
        prune_region(plan, "eu-central", now=T0 + 5 * DAY, client=state)
    assert err.value.facts["failed"] == ["offsite: storage is unavailable"]
    assert err.value.facts["pruned"] == HOME
    assert old not in committed(home)


def test_prune_removes_killed_writers_temp_files_once_older_than_the_grace(plan, state):
    import os
    inner = innermost(store_for(plan, HOME))
    inner.partial_dir.mkdir(parents=True, exist_ok=True)
    old, fresh = inner.partial_dir / "killed-writer.tmp", inner.partial_dir / "live-writer.tmp"
    old.write_bytes(b"half a backup")
    fresh.write_bytes(b"still writing")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    dry = prune_location(plan, HOME, dry_run=True, orphan_grace=3600)
    assert old.exists() and dry.reaped == 0
    report = prune_location(plan, HOME, dry_run=False, orphan_grace=3600)
    assert report.reaped == 1 and not old.exists() and fresh.exists()
