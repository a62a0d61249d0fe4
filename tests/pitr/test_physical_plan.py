"""The plan chooses the schedule of file-level base backups: full weekly, differential
daily, incremental hourly, each a base-backup entry with its type and workers."""

from __future__ import annotations

import pytest

from drfleet.beat_schedule.entries import BASE_BACKUP_TASK, schedule_entries
from drfleet.plan.loader import load_plan
from tests.fixtures.pitr_cluster import _ONE_REGION, _PLAN

_POLICIES = """\
      - {name: weekly-full, trigger: weekly, keep: 5 weeks, copies: [home-region], physical: full, workers: 4}
      - {name: daily-diff, trigger: daily, keep: 14 days, copies: [home-region], physical: differential}
      - {name: hourly-incr, trigger: hourly, keep: 2 days, copies: [home-region], physical: incremental}
"""


def _plan(tmp_path, policies=_POLICIES, kind="postgres"):
    text = _PLAN.format(store=tmp_path / "store", keyring=tmp_path / "k", dataset="auth-db", env="X",
                        **_ONE_REGION) + policies
    if kind != "postgres":
        text = text.replace("kind: postgres", f"kind: {kind}")
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return load_plan(path)


def test_physical_policies_schedule_base_backups_of_their_type(tmp_path):
    entries = {e.policy: e for e in schedule_entries(_plan(tmp_path)) if e.dataset == "auth-db"
               and e.kind in ("backup", "base-backup")}
    assert entries["weekly-full"].task == BASE_BACKUP_TASK
    assert entries["weekly-full"].kwargs["backup_type"] == "full" and entries["weekly-full"].kwargs["workers"] == 4
    assert entries["daily-diff"].kwargs["backup_type"] == "differential"
    assert entries["hourly-incr"].kwargs["backup_type"] == "incremental"
    assert entries["hourly-incr"].trigger.cron.startswith("0 * ")
    assert entries["hourly"].kind == "backup" and "backup_type" not in entries["hourly"].kwargs  # pg_dump stays


def test_physical_is_refused_for_other_kinds_and_modes(tmp_path):
    with pytest.raises(Exception, match="postgres datasets only"):
        _plan(tmp_path, kind="mongodb")
    with pytest.raises(Exception, match="physical"):
        _plan(tmp_path, "      - {name: x, trigger: hourly, keep: 2 days, copies: [home-region], "
                        "physical: full, mode: oplog}\n")


def test_from_standby_needs_a_standby_connection(tmp_path):
    with pytest.raises(Exception, match="standby_connection"):
        _plan(tmp_path, "      - {name: s, trigger: hourly, keep: 2 days, copies: [home-region], "
                        "physical: incremental, from_standby: true}\n")
