"""A standby built by drfleet from its base backup and archive follows the primary, and
after promotion accepts writes; promoting twice is harmless (task redelivery)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.pitr.basebackup import run_base_backup
from drfleet.pitr.standby import list_standbys, promote_standby
from tests.fixtures.util import wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def drfleet_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRFLEET_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_standby_follows_the_primary_and_accepts_writes_after_promotion(pitr_setup, drfleet_home):
    s = pitr_setup
    s.sql("CREATE TABLE accounts (id int PRIMARY KEY, name text)")
    s.sql("INSERT INTO accounts VALUES (1, 'before the base backup')")
    run_base_backup(s.plan, s.dataset)
    s.sql("INSERT INTO accounts VALUES (2, 'archived before the standby')")
    s.switch_and_wait()

    target = s.new_dir("standby")
    run = CliRunner().invoke(main, ["standby", "create", s.dataset, "--on", "local", "--to", target,
                                    "--json", "--plan", str(s.plan_path)])
    assert run.exit_code == 0, run.output
    info = json.loads(run.stdout)
    assert s.sql("SELECT pg_is_in_recovery()", port=info["port"]) == [(True,)]
    assert s.sql("SELECT count(*) FROM accounts", port=info["port"]) == [(2,)]

    s.sql("INSERT INTO accounts VALUES (3, 'streamed')")  # not archived: only streaming brings it
    wait_for(lambda: s.sql("SELECT count(*) FROM accounts", port=info["port"]) == [(3,)],
             timeout=60, what="the standby to receive row 3")
    assert [x.data_dir for x in list_standbys(s.dataset)] == [info["data_dir"]]

    promoted = promote_standby(s.plan, s.dataset)
    assert promoted["promoted"] and not promoted["already_primary"]
    assert s.sql("SELECT pg_is_in_recovery()", port=info["port"]) == [(False,)]
    s.sql("INSERT INTO accounts VALUES (4, 'written on the promoted standby')", port=info["port"])
    assert s.sql("SELECT count(*) FROM accounts", port=info["port"]) == [(4,)]

    again = promote_standby(s.plan, s.dataset)
    assert again["already_primary"] is True
    assert list_standbys(s.dataset)[0].promoted_at is not None
