"""`drfleet audit` (newest first, filters before the limit, --since, whole words), `backups
list` of an unknown dataset, and a broker that does not answer."""

import json
import os
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from tests.fixtures.fleet import write_plan


@pytest.fixture
def plan_with_state(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    for name in ("DRFLEET_BROKER_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS"):
        monkeypatch.delenv(name, raising=False)
    return write_plan(tmp_path / "plan")


def _add(client, ms: int, action: str, actor: str = "cli", **details):
    """An audit record with a chosen stream id (time), as audit.record writes them."""
    from drfleet.state.audit import AUDIT_STREAM
    client.xadd(AUDIT_STREAM, {"action": action, "actor": actor, "outcome": "succeeded", "at": f"{ms / 1000:.3f}",
                               "details": json.dumps(details, sort_keys=True)}, id=f"{ms}-0")


def _audit(plan, *args):
    out = CliRunner().invoke(main, ["audit", "--plan", str(plan), *args])
    assert out.exit_code == 0, out.output
    return out


def test_newest_first_filters_before_the_limit_and_since(plan_with_state, redis_url):
    import redis
    client = redis.Redis.from_url(redis_url)
    base = 1_700_000_000_000
    _add(client, base + 1, "keys.rotate", category="content")
    for i in range(2, 400):  # many other records after it: a limit applied before the filter would miss it
        _add(client, base + i, "drfleet.backup", dataset="site", n=i)
    _add(client, base + 500, "keys.rotate", actor="alice", category="offsite")
    rows = [json.loads(line) for line in _audit(plan_with_state, "--json", "--action", "keys.rotate",
                                                "--limit", "2").stdout.splitlines()]
    assert [r["details"]["category"] for r in rows] == ["offsite", "content"]        # newest first
    oldest = [json.loads(line) for line in _audit(plan_with_state, "--json", "--oldest-first",
                                                  "--limit", "1").stdout.splitlines()]
    assert oldest[0]["details"] == {"category": "content"}
    by_alice = [json.loads(line) for line in _audit(plan_with_state, "--json", "--actor", "alice").stdout.splitlines()]
    assert [r["actor"] for r in by_alice] == ["alice"]
    since = [json.loads(line) for line in _audit(plan_with_state, "--json", "--since", "2023-11-14T22:13:20.390+00:00",
                                                 "--dataset", "site").stdout.splitlines()]
    assert [r["details"]["n"] for r in since] == list(range(399, 389, -1))
    assert _audit(plan_with_state, "--json", "--since", "1h").stdout == ""   # all of them are years old


@pytest.fixture
def kolkata_time():
    """The local time zone is Asia/Kolkata (UTC+05:30) for this test."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_the_table_shows_local_times_and_whole_words(plan_with_state, redis_url, kolkata_time):
    import redis
    client = redis.Redis.from_url(redis_url)
    long_id = "20261101T000000Z-0000abcd-with-a-rather-long-suffix-that-must-not-be-cut"
    _add(client, 1_700_000_000_000, "drfleet.restore.with.a.long.action.name", dataset="site", backup_id=long_id)
    out = _audit(plan_with_state).stdout
    assert "2023-11-15 03:43:20 IST" in out
    assert long_id in out and "drfleet.restore.with.a.long.action.name" in out and "…" not in out
    assert "no audit records match" in _audit(plan_with_state, "--action", "nothing.like.this").stdout


def test_since_that_is_neither_a_duration_nor_a_time_is_refused(plan_with_state):
    out = CliRunner().invoke(main, ["audit", "--plan", str(plan_with_state), "--since", "yesterdayish"])
    assert out.exit_code == 2 and "--since" in out.output and "2h" in out.output


def test_backups_list_of_an_unknown_dataset_is_an_error_naming_the_known_ones(tmp_path):
    plan = write_plan(tmp_path / "plan")
    out = CliRunner().invoke(main, ["backups", "list", "nope", "--plan", str(plan)])
    assert out.exit_code == 1 and "'nope'" in out.output and "known: site" in out.output
    assert "no backups" not in out.output
    out = CliRunner().invoke(main, ["backups", "list", "--location", "moon", "--plan", str(plan)])
    assert out.exit_code == 2 and "moon" in out.output and "eu-central-store" in out.output


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers (a hung or firewalled broker)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_a_broker_that_does_not_answer_fails_fast_naming_the_url_not_the_password(tmp_path, monkeypatch,
                                                                                  silent_server):
    plan = write_plan(tmp_path / "plan")
    for name in ("DRFLEET_STATE_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRFLEET_BROKER_URL", f"redis://:hunter2@127.0.0.1:{silent_server}/0")
    sent = []
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: sent.append(a))
    out = CliRunner().invoke(main, ["backup", "site", "--plan", str(plan)])
    assert out.exit_code == 1, out.output
    assert f"redis://:**@127.0.0.1:{silent_server}/0" in out.output
    assert "hunter2" not in out.output and sent == []


def test_a_state_server_that_does_not_answer_fails_the_audit_naming_the_url(tmp_path, monkeypatch, silent_server):
    plan = write_plan(tmp_path / "plan")
    for name in ("DRFLEET_BROKER_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRFLEET_STATE_URL", f"redis://:hunter2@127.0.0.1:{silent_server}/0")
    out = CliRunner().invoke(main, ["audit", "--plan", str(plan)])
    assert out.exit_code == 1, out.output
    assert f"redis://:**@127.0.0.1:{silent_server}/0" in out.output and "hunter2" not in out.output
