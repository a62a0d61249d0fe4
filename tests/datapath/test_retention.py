"""Retention as a pure decision: weeks of simulated backups on a simulated clock, checked
against the policies exactly after every prune."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from drfleet.datapath.retention import Candidate, decide
from drfleet.plan.loader import load_plan
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)  # a Monday
HOUR, DAY = timedelta(hours=1), timedelta(days=1)

GFS = (dataset("orders", policy("hourly", "hourly", "24 hours"),
                    policy("daily", "daily at 02:00", "7 days"),
                    policy("weekly", "weekly on sunday at 03:00", "4 weeks"),
                    policy("monthly", "monthly", "3 versions"), source="/srv/orders", rto="1h")
            + dataset("archive", policy("forever", "daily", "forever"), policy("all", "weekly", "all versions"),
                    source="/srv/archive", rpo="1d", rto="1d"))

CHAIN = (dataset("files", policy("full", "weekly on sunday at 03:00", "1 versions"),
                    policy("incr", "daily at 02:00", "7 days"), source="/srv/files", rpo="1d", rto="1h"))


def plan_with(tmp_path, datasets: str):
    return load_plan(write_plan(tmp_path / "plan", datasets=textwrap.dedent(datasets)))


_serial = iter(range(1, 10**9))


def backup(dataset, policy, when, **extra) -> Candidate:
    return Candidate(dataset, f"{when:%Y%m%dT%H%M%SZ}-{next(_serial):08x}", policy, when, **extra)


class Catalog:
    """The simulated location: backups come in on schedule, prune applies each decision."""

    def __init__(self, plan):
        self.plan = plan
        self.present: dict[str, Candidate] = {}
        self.created: list[Candidate] = []

    def add(self, candidate: Candidate) -> Candidate:
        self.present[candidate.backup_id] = candidate
        self.created.append(candidate)
        return candidate

    def prune(self, now):
        decision = decide(self.present.values(), self.plan, now)
        for verdict in decision.deleted:
            del self.present[verdict.backup.backup_id]
        return decision


def gfs_schedule(t: datetime) -> list[str]:
    due = ["hourly"]
    if t.hour == 2:
        due.append("daily")
    if t.weekday() == 6 and t.hour == 3:
        due.append("weekly")
    if t.day == 1 and t.hour == 0:
        due.append("monthly")
    return due


def expected_gfs(created: list[Candidate], now: datetime) -> set[str]:
    """The policies, written out independently of the implementation."""
    windows = {"hourly": 24 * HOUR, "daily": 7 * DAY, "weekly": 28 * DAY}
    keep = {b.backup_id for b in created if b.policy in windows and now - b.created_at <= windows[b.policy]}
    keep |= {b.backup_id for b in sorted((b for b in created if b.policy == "monthly"),
                                         key=lambda b: b.created_at)[-3:]}
    verified = [b for b in created if b.verified]
    if verified:
        keep.add(max(verified, key=lambda b: b.created_at).backup_id)
    return keep


def test_weeks_of_gfs_backups_keep_exactly_what_the_policies_say(tmp_path):
    catalog = Catalog(plan_with(tmp_path, GFS))
    now = T0
    outage_from, outage_to = T0 + 70 * DAY, T0 + 82 * DAY  # the source is down: no backups
    checks = 0
    while now < T0 + 90 * DAY:
        if now == outage_to:
            # twelve days without backups: the hourly and daily series are gone, except
            # the newest verified backup (the last daily before the outage)
            survivors = [b for b in catalog.present.values() if b.policy in ("hourly", "daily")]
            assert [(b.policy, b.created_at) for b in survivors] == [("daily", outage_from - DAY + 2 * HOUR)]
        if not outage_from <= now < outage_to:
            for policy in gfs_schedule(now):
                # only the daily backups are verified (by the nightly verify)
                catalog.add(backup("orders", policy, now, verified=policy == "daily"))
        if now.hour % 6 == 0:
            catalog.prune(now)
            assert set(catalog.present) == expected_gfs(catalog.created, now), now
            checks += 1
        now += HOUR
    assert checks == 360
    assert len(catalog.created) == 1964  # 78 days of hourly, daily, weekly and monthly backups


def test_every_surviving_backup_says_why_and_every_deleted_one_too(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 40 * DAY
    old_hourly = backup("orders", "hourly", now - 2 * DAY)
    young_hourly = backup("orders", "hourly", now - HOUR)
    monthlies = [backup("orders", "monthly", now - (30 * k) * DAY) for k in range(5)]
    decision = decide([old_hourly, young_hourly, *monthlies], plan, now)
    reasons = {v.backup.backup_id: (v.keep, v.reasons) for v in decision.verdicts}
    assert reasons[old_hourly.backup_id] == (False, ["policy hourly: older than 24 hours (2.0 days old)"])
    assert reasons[young_hourly.backup_id] == (True, ["policy hourly: within 24 hours"])
    assert reasons[monthlies[0].backup_id] == (True, ["newest backup of orders (none of its backups here is verified)",
                                                      "policy monthly: version 1 of the newest 3"])
    assert reasons[monthlies[4].backup_id] == (False, ["policy monthly: version 5, beyond the newest 3"])
    assert [v.backup.backup_id for v in decision.deleted] == [monthlies[4].backup_id, monthlies[3].backup_id,
                                                               old_hourly.backup_id]


def test_the_window_edge_is_inclusive(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 10 * DAY
    newest = backup("orders", "hourly", now)
    at_edge = backup("orders", "hourly", now - 24 * HOUR)
    past_edge = backup("orders", "hourly", now - 24 * HOUR - timedelta(seconds=1))
    decision = decide([newest, at_edge, past_edge], plan, now)
    assert [v.backup.backup_id for v in decision.kept] == [at_edge.backup_id, newest.backup_id]


def test_forever_and_all_versions_keep_everything(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 3000 * DAY
    backups = [backup("archive", "forever", T0 + k * DAY) for k in range(50)]
    backups += [backup("archive", "all", T0 + k * 7 * DAY) for k in range(50)]
    decision = decide(backups, plan, now)
    assert decision.deleted == []
    assert "policy forever keeps forever" in decision.kept[0].reasons


def test_a_held_backup_outlives_its_policy(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 100 * DAY
    held = backup("orders", "hourly", T0, held=True)
    fresh = backup("orders", "hourly", now)
    decision = decide([held, fresh], plan, now)
    verdict = decision.verdicts[0]
    assert verdict.keep and verdict.reasons[0] == "on legal hold"
    assert decision.deleted == []


def test_the_newest_verified_backup_stays_even_when_newer_unverified_ones_exist(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 30 * DAY
    verified_old = backup("orders", "hourly", now - 5 * DAY, verified=True)
    verified_older = backup("orders", "hourly", now - 6 * DAY, verified=True)
    unverified_new = backup("orders", "hourly", now - HOUR)
    decision = decide([verified_older, verified_old, unverified_new], plan, now)
    assert [v.backup.backup_id for v in decision.kept] == [verified_old.backup_id, unverified_new.backup_id]
    assert decision.kept[0].reasons == ["newest verified backup of orders",
                                        "policy hourly: older than 24 hours (5.0 days old)"]


def test_a_backup_whose_policy_left_the_plan_is_kept(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 30 * DAY
    orphan = backup("orders", "renamed-policy", T0)
    fresh = backup("orders", "hourly", now)
    decision = decide([orphan, fresh], plan, now)
    assert decision.deleted == []
    assert decision.verdicts[0].reasons == ["policy renamed-policy is not in the plan; an operator decides"]


def test_a_naive_clock_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timezone"):
        decide([], plan_with(tmp_path, GFS), datetime(2024, 1, 1))


def test_weeks_of_incrementals_keep_every_parent_a_kept_incremental_needs(tmp_path):
    """Weekly full (keep 1 version) + daily incrementals (keep 7 days), each incremental
    naming the week's full and every earlier incremental of the week as parents."""
    catalog = Catalog(plan_with(tmp_path, CHAIN))
    now, full, chain = T0, None, []
    while now < T0 + 8 * 7 * DAY:
        if now.weekday() == 6 and now.hour == 3:
            full, chain = catalog.add(backup("files", "full", now)), []
        elif now.hour == 2 and full is not None:
            chain.append(catalog.add(backup("files", "incr", now,
                                            parents=(full.backup_id, *(b.backup_id for b in chain)))))
        if now.hour == 4 and catalog.created:
            catalog.prune(now)
            incrementals = {b.backup_id for b in catalog.created if b.policy == "incr" and now - b.created_at <= 7 * DAY}
            needed = {p for b in catalog.created if b.backup_id in incrementals for p in b.parents}
            newest_full = max((b for b in catalog.created if b.policy == "full"), key=lambda b: b.created_at)
            newest = max(catalog.created, key=lambda b: b.created_at)
            assert set(catalog.present) == incrementals | needed | {newest_full.backup_id, newest.backup_id}, now
        now += HOUR
    # at the end: this week's full, last week's full (its incrementals are still within
    # 7 days), and every incremental of last week's chain those need
    fulls = [b for b in catalog.present.values() if b.policy == "full"]
    assert len(fulls) == 2
    kept_parent = [v for v in catalog.prune(now).kept if v.backup.backup_id == min(f.backup_id for f in fulls)][0]
    assert any(r.startswith("needed by incremental") for r in kept_parent.reasons)


def test_retention_is_judged_per_dataset(tmp_path):
    plan = plan_with(tmp_path, GFS)
    now = T0 + 30 * DAY
    orders_old = backup("orders", "hourly", now - 3 * DAY)
    orders_new = backup("orders", "hourly", now)
    archive_only = backup("archive", "forever", T0)
    decision = decide([orders_old, orders_new, archive_only], plan, now)
    assert [v.backup.backup_id for v in decision.deleted] == [orders_old.backup_id]
