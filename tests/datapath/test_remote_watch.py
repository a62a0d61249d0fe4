"""Trees on a plan host are surveyed over a real sshd with the same digest as a local walk,
and watched like local trees."""

import os

import pytest
import redis

from drfleet.datapath.remote_treestate import survey_remote
from drfleet.datapath.treestate import TreeMissing, survey
from drfleet.datapath.watch import Outcome, read_state, watch_policy
from drfleet.plan.loader import load_plan
from drfleet.providers.ssh import HostUnreachable
from tests.fixtures.fleet import write_plan


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "uploads"
    (root / "2026" / "01").mkdir(parents=True)
    (root / "2026" / "01" / "a.jpg").write_bytes(os.urandom(2048))
    (root / "name with spaces & ünïcode.txt").write_text("x\n")
    (root / "-dash").write_text("starts with a dash\n")
    (root / "latest").symlink_to("2026/01/a.jpg")
    os.mkfifo(root / "pipe")
    return root


@pytest.mark.parametrize("kind", ["stat", "content"])
def test_a_remote_survey_digests_a_tree_exactly_as_a_local_walk_does(sshd_server, tree, kind):
    remote = survey_remote(sshd_server.target(), str(tree), kind=kind)
    local = survey(str(tree), kind=kind)
    assert (remote.digest, remote.entries) == (local.digest, local.entries)
    assert remote.hashes == local.hashes


def test_a_remote_content_survey_reads_only_files_the_cache_cannot_vouch_for(sshd_server, tree):
    first = survey_remote(sshd_server.target(), str(tree), kind="content")
    poisoned = {m: entry[:4] + ["0" * 64] for m, entry in first.hashes.items()}
    assert survey_remote(sshd_server.target(), str(tree), kind="content", hashes=poisoned).digest != first.digest
    (tree / "-dash").write_text("changed\n")
    again = survey_remote(sshd_server.target(), str(tree), kind="content", hashes=first.hashes)
    assert again.digest != first.digest and again.hashes["-dash"][4] != first.hashes["-dash"][4]


def test_a_remote_tree_that_does_not_exist_is_a_clear_error(sshd_server, tmp_path):
    with pytest.raises(TreeMissing) as err:
        survey_remote(sshd_server.target(), str(tmp_path / "gone"), kind="stat")
    assert str(tmp_path / "gone") in str(err.value) and "127.0.0.1" in str(err.value)


DATASET = """\
uploads:
  kind: files
  region: eu-central
  source: {{host: web-1, path: {src}}}
  key: content
  rpo: 1m
  rto: 1h
  policies:
    - {{name: realtime, trigger: continuous, keep: 7 days, copies: [home-region]}}
"""


def remote_plan(tmp_path, sshd_server, tree, port=None):
    hosts = (f"hosts:\n  web-1: {{address: 127.0.0.1, port: {port or sshd_server.port}, user: {sshd_server.user}, "
             f"key_file: {sshd_server.key_file}, known_hosts: {sshd_server.known_hosts_file}}}\n")
    return load_plan(write_plan(tmp_path / "plan", datasets=DATASET.format(src=tree), extra=hosts))


def test_a_remote_tree_is_watched_like_a_local_one(sshd_server, tree, tmp_path, redis_url):
    plan, client, sends = remote_plan(tmp_path, sshd_server, tree), redis.Redis.from_url(redis_url), []

    def watch(outcome=Outcome("running")):
        return watch_policy(plan, "uploads", "realtime", region="eu-central", send_backup=sends.append,
                            outcome_of=lambda task_id: outcome, client=client)

    assert watch()["status"] == "baseline" and len(sends) == 1
    committed = Outcome("committed", finished_at=read_state("uploads", "realtime", client=client).sent_at,
                        backup_id="B1")
    assert watch(committed)["status"] == "unchanged" and len(sends) == 1
    (tree / "2026" / "01" / "b.jpg").write_bytes(b"new upload")
    assert watch()["status"] == "changed" and len(sends) == 2


def test_an_unreachable_host_fails_the_watch_with_the_host_named(sshd_server, tree, tmp_path, redis_url):
    from tests.fixtures.util import free_port
    plan = remote_plan(tmp_path, sshd_server, tree, port=free_port())
    with pytest.raises(HostUnreachable) as err:
        watch_policy(plan, "uploads", "realtime", region="eu-central", send_backup=lambda s: None,
                     outcome_of=lambda t: Outcome("waiting"), client=redis.Redis.from_url(redis_url))
    assert "127.0.0.1" in str(err.value)
    assert read_state("uploads", "realtime", client=redis.Redis.from_url(redis_url)).digest is None
