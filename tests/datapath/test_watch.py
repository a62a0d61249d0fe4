"""Tree digests and the watch state machine: what counts as a change, what a change sends,
and how a backup's outcome settles it. Redis is a real redis-server; backups are recorded
sends here (the real worker path is in tests/tasks/test_watch.py)."""

import os
import threading
import time

import pytest
import redis

from drfleet.datapath.errors import WrongRegion
from drfleet.datapath.treestate import TreeMissing, survey
from drfleet.datapath.watch import Outcome, WatchState, WatchUnsupported, advance, read_state, watch_policy
from drfleet.plan.loader import load_plan
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "conf.d").mkdir(parents=True)
    (root / "conf.d" / "app.conf").write_text("port = 80\n")
    (root / "motd").write_text("hello\n")
    (root / "current").symlink_to("conf.d/app.conf")
    return root


def later(path, seconds=5):
    """Move a file's mtime forward, as a later write would."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


# -- what counts as a change ----------------------------------------------------------

def test_an_untouched_tree_has_the_same_stat_and_content_digest(tree):
    for kind in ("stat", "content"):
        assert survey(str(tree), kind=kind).digest == survey(str(tree), kind=kind).digest


@pytest.mark.parametrize("change", ["write", "touch", "chmod", "new file", "delete", "rename", "relink"])
def test_any_change_moves_the_stat_digest(tree, change):
    before = survey(str(tree), kind="stat").digest
    {"write": lambda: (tree / "motd").write_text("bye\n"),
     "touch": lambda: later(tree / "motd"),
     "chmod": lambda: (tree / "motd").chmod(0o600),
     "new file": lambda: (tree / "conf.d" / "new.conf").write_text(""),
     "delete": lambda: (tree / "motd").unlink(),
     "rename": lambda: (tree / "motd").rename(tree / "motd.old"),
     "relink": lambda: ((tree / "current").unlink(), (tree / "current").symlink_to("motd"))}[change]()
    assert survey(str(tree), kind="stat").digest != before


@pytest.mark.parametrize("change", ["touch", "same bytes rewritten"])
def test_a_touch_or_an_identical_rewrite_leaves_the_content_digest(tree, change):
    first = survey(str(tree), kind="content")
    if change == "touch":
        later(tree / "conf.d" / "app.conf")
    else:
        (tree / "conf.d" / "app.conf").write_text("port = 80\n")
    again = survey(str(tree), kind="content", hashes=first.hashes)
    assert again.digest == first.digest


@pytest.mark.parametrize("change", ["content", "chmod", "new file", "delete", "relink"])
def test_real_changes_move_the_content_digest(tree, change):
    first = survey(str(tree), kind="content")
    {"content": lambda: (tree / "conf.d" / "app.conf").write_text("port = 8080\n"),
     "chmod": lambda: (tree / "motd").chmod(0o600),
     "new file": lambda: (tree / "conf.d" / "new.conf").write_text(""),
     "delete": lambda: (tree / "motd").unlink(),
     "relink": lambda: ((tree / "current").unlink(), (tree / "current").symlink_to("motd"))}[change]()
    assert survey(str(tree), kind="content", hashes=first.hashes).digest != first.digest


def test_unchanged_files_are_not_read_again(tree):
    """The cache is trusted for files whose size, times and inode did not move: a (wrong)
    cached hash shows up in the digest, which proves the file was not re-read."""
    first = survey(str(tree), kind="content")
    poisoned = {name: entry[:4] + ["0" * 64] for name, entry in first.hashes.items()}
    assert survey(str(tree), kind="content", hashes=poisoned).digest != first.digest
    later(tree / "motd")  # a changed stat key makes the file be read again
    refreshed = survey(str(tree), kind="content", hashes=poisoned)
    assert refreshed.hashes["motd"][4] == first.hashes["motd"][4]


def test_the_survey_reports_the_oldest_change_since_the_last_one(tree):
    first = survey(str(tree), kind="stat")
    time.sleep(0.05)
    (tree / "motd").write_text("one\n")
    written = os.lstat(tree / "motd").st_ctime_ns / 1e9
    time.sleep(0.05)
    (tree / "conf.d" / "app.conf").write_text("two\n")
    again = survey(str(tree), kind="stat", since=first.started_at)
    assert again.changed_since == written
    assert survey(str(tree), kind="stat", since=again.started_at + 1).changed_since is None


def test_sockets_and_fifos_are_ignored_like_the_dump_ignores_them(tree):
    before = survey(str(tree), kind="stat")
    os.mkfifo(tree / "conf.d" / "pipe")
    # the directory changed (a new entry), but the fifo itself is not an entry
    assert survey(str(tree), kind="stat").entries == before.entries


def test_a_missing_tree_is_a_clear_error(tmp_path):
    with pytest.raises(TreeMissing) as err:
        survey(str(tmp_path / "gone"), kind="stat")
    assert str(tmp_path / "gone") in str(err.value) and "what to do" in str(err.value)


# -- the state machine ----------------------------------------------------------------

def seen(digest, at, changed_since=None):
    from drfleet.datapath.treestate import Survey
    return Survey(digest=digest * 8, kind="stat", entries=3, started_at=at, changed_since=changed_since)


def test_the_first_survey_sends_a_baseline_backup_without_a_lag():
    state, decision = advance(WatchState(), seen("a", 100), None, 100)
    assert decision.send and decision.send.slot.startswith("watch:1:")
    state, decision = advance(state, seen("a", 115), Outcome("committed", finished_at=120, backup_id="B1"), 115)
    assert decision.lag_seconds is None and decision.send is None
    assert (state.committed_generation, state.committed_backup) == (1, "B1")


def committed_baseline():
    state, _ = advance(WatchState(), seen("a", 100), None, 100)
    state, _ = advance(state, seen("a", 115), Outcome("committed", finished_at=110, backup_id="B1"), 115)
    return state


def test_an_unchanged_backed_up_tree_sends_nothing():
    state = committed_baseline()
    for t in (130, 145, 160):
        state, decision = advance(state, seen("a", t), None, t)
        assert decision.send is None and not decision.changed


def test_a_change_sends_one_backup_and_its_commit_gives_the_lag():
    state = committed_baseline()
    state, decision = advance(state, seen("b", 130, changed_since=122.5), None, 130)
    assert decision.changed and decision.send.slot.startswith("watch:2:bbbb")
    state, decision = advance(state, seen("b", 145), Outcome("running"), 145)
    assert decision.send is None
    state, decision = advance(state, seen("b", 160), Outcome("committed", finished_at=150, backup_id="B2"), 160)
    assert decision.lag_seconds == pytest.approx(27.5) and state.lag_seconds == pytest.approx(27.5)
    assert decision.send is None and state.oldest_unbacked() is None


def test_a_change_without_a_newer_ctime_counts_from_the_previous_survey():
    state = committed_baseline()
    state, decision = advance(state, seen("b", 130, changed_since=None), None, 130)
    assert state.sent_change_at == 115  # the earliest it can have happened: after the last look


def test_changes_during_a_running_backup_wait_for_it_then_go_in_one_more_backup():
    state = committed_baseline()
    state, first = advance(state, seen("b", 130, 125), None, 130)
    state, d = advance(state, seen("c", 145, 140), Outcome("running"), 145)
    state, d2 = advance(state, seen("d", 160, 155), Outcome("running"), 160)
    assert d.send is None and d2.send is None and state.pending_since == 140
    state, d3 = advance(state, seen("d", 175), Outcome("committed", finished_at=170, backup_id="B2"), 175)
    assert d3.lag_seconds == 45 and d3.send.slot.startswith("watch:3:dddd")
    assert state.sent_change_at == 140


def test_a_failed_backup_is_resent_under_a_new_slot_after_a_growing_backoff():
    state = committed_baseline()
    state, first = advance(state, seen("b", 130, 125), None, 130)
    state, failed = advance(state, seen("b", 145), Outcome("failed"), 145, retry_base=15)
    assert failed.resent_because == "the backup failed" and failed.send is None
    state, waiting = advance(state, seen("b", 155), None, 155, retry_base=15)
    assert waiting.send is None
    state, again = advance(state, seen("b", 160), None, 160, retry_base=15)
    assert again.send.slot != first.send.slot and state.sent_change_at == 125
    state, _ = advance(state, seen("b", 175), Outcome("failed"), 175, retry_base=15)
    assert (state.failures, state.retry_at) == (2, 175 + 30)
    state, _ = advance(state, seen("b", 205), None, 205, retry_base=15)
    state, done = advance(state, seen("b", 220), Outcome("committed", finished_at=215, backup_id="B2"), 220)
    assert done.lag_seconds == 90 and (state.failures, state.retry_at) == (0, None)


def test_a_backup_that_never_starts_is_resent_after_the_resend_window():
    state = committed_baseline()
    state, first = advance(state, seen("b", 130, 125), None, 130)
    state, d = advance(state, seen("b", 145), Outcome("waiting"), 145, resend_after=60)
    assert d.send is None
    state, d = advance(state, seen("b", 200), Outcome("waiting"), 200, resend_after=60, retry_base=0)
    assert d.send and d.resent_because == "the backup never started"


def test_a_survey_older_than_the_recorded_one_does_not_move_the_digest_back():
    state = committed_baseline()
    state, _ = advance(state, seen("b", 130, 125), None, 130)
    state, d = advance(state, seen("a", 120), Outcome("running"), 131)
    assert not d.changed and state.digest == "b" * 8 and state.generation == 2


def test_state_survives_its_json_form():
    state = committed_baseline()
    assert WatchState.from_json(state.to_json()) == state


# -- watch_policy against Redis ---------------------------------------------------------

def watched_datasets(*, src) -> str:
    return (dataset("uploads", policy("realtime", "continuous", "7 days"),
                    policy("nightly", "daily", "7 days"), source=src, rpo="1m", rto="1h")
            + dataset("app-db", policy("wal", "continuous", "7 days", mode="wal"), kind="postgres",
                    connection="APP_DB_URL", rpo="1m", rto="1h"))


@pytest.fixture
def watched(tmp_path, tree, redis_url):
    plan_path = write_plan(tmp_path / "plan", datasets=watched_datasets(src=tree))
    return load_plan(plan_path), redis.Redis.from_url(redis_url)


def run_watch(plan, client, sends, outcome=Outcome("running")):
    return watch_policy(plan, "uploads", "realtime", region="eu-central", send_backup=sends.append,
                        outcome_of=lambda task_id: outcome, client=client)


def test_watch_policy_sends_once_and_waits_while_the_backup_is_outstanding(watched, tree):
    plan, client = watched
    sends = []
    assert run_watch(plan, client, sends)["status"] == "baseline"
    assert run_watch(plan, client, sends)["status"] == "pending"
    (tree / "motd").write_text("changed\n")
    assert run_watch(plan, client, sends)["status"] == "changed"
    assert len(sends) == 1
    committed = Outcome("committed", finished_at=time.time(), backup_id="B1")
    summary = run_watch(plan, client, sends, committed)
    assert summary["committed_backup"] == "B1" and len(sends) == 2  # generation 2 was not in B1's send
    state = read_state("uploads", "realtime", client=client)
    assert state.sent_task == sends[-1].task_id and state.sent_change_at is not None


def test_overlapping_watches_send_one_backup(watched):
    plan, client = watched
    sends, barrier = [], threading.Barrier(4)

    def one():
        barrier.wait()
        run_watch(plan, client, sends)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sends) == 1


def test_a_send_that_fails_leaves_the_change_pending_for_the_next_watch(watched):
    plan, client = watched

    def broken(send):
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        watch_policy(plan, "uploads", "realtime", region="eu-central", send_backup=broken,
                     outcome_of=lambda t: Outcome("waiting"), client=client)
    assert read_state("uploads", "realtime", client=client).sent_task is None
    sends = []
    run_watch(plan, client, sends)
    assert len(sends) == 1


@pytest.mark.parametrize("dataset, policy, region, error", [
    ("uploads", "nightly", "eu-central", WatchUnsupported),
    ("app-db", "wal", "eu-central", WatchUnsupported),
    ("uploads", "realtime", "us-east", WrongRegion),
])
def test_what_cannot_be_watched_is_refused_with_the_reason(watched, dataset, policy, region, error):
    plan, client = watched
    with pytest.raises(error) as err:
        watch_policy(plan, dataset, policy, region=region, send_backup=lambda s: None,
                     outcome_of=lambda t: Outcome("waiting"), client=client)
    assert dataset in str(err.value)


def test_a_tree_that_disappears_fails_the_watch_and_its_unbacked_age_keeps_showing(watched, tree):
    import shutil

    from prometheus_client import REGISTRY
    plan, client = watched
    sends = []
    run_watch(plan, client, sends)
    run_watch(plan, client, sends, Outcome("committed", finished_at=time.time(), backup_id="B1"))
    (tree / "motd").write_text("changed\n")
    run_watch(plan, client, sends)  # sends a backup for the change, which never commits
    shutil.rmtree(tree)
    with pytest.raises(TreeMissing):
        run_watch(plan, client, sends)
    age = REGISTRY.get_sample_value("drfleet_watch_unbacked_seconds", {"dataset": "uploads", "policy": "realtime"})
    assert age > 0
