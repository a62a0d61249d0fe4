"""Bandwidth limits: a token bucket (on a fake clock), a throttled store of every backend
kind holding its transfers to the limit, the plan's phrases, and rsync's --bwlimit."""

from __future__ import annotations

import pytest

from drfleet.plan.rates import parse_rate
from drfleet.providers.storage import InvalidStoreSettings, RateLimit, ThrottledStore, innermost, open_store
from drfleet.providers.storage.filesystem import FilesystemStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_the_token_bucket_holds_the_rate_over_time():
    clock = FakeClock()
    limit = RateLimit(1000, burst_seconds=0.25, clock=clock, sleep=clock.sleep)
    for _ in range(40):
        limit.take(100)  # 4000 bytes at 1000 B/s
    assert 3.5 <= clock.now <= 4.0  # at most the burst ahead of the rate


def test_a_throttled_store_spends_the_time_its_transfers_need(tmp_path):
    clock = FakeClock()
    store = ThrottledStore(FilesystemStore(tmp_path), RateLimit(64 << 10, burst_seconds=0, clock=clock,
                                                                sleep=clock.sleep))
    with store.writer("big") as writer:
        writer.write(b"x" * (256 << 10))
        writer.commit()
    assert clock.now == pytest.approx(4.0)
    assert store.get_bytes("big") == b"x" * (256 << 10)
    assert clock.now == pytest.approx(8.0)
    store.put_bytes("small", b"y" * (64 << 10))
    assert clock.now == pytest.approx(9.0)


def test_open_store_wraps_any_kind_with_its_bandwidth_limit(tmp_path):
    store = open_store("filesystem", {"root": tmp_path, "bandwidth_limit": 10 << 20})
    assert isinstance(store.inner, ThrottledStore) and isinstance(innermost(store), FilesystemStore)
    store.put_bytes("k", b"v")
    with pytest.raises(InvalidStoreSettings, match="bandwidth_limit"):
        open_store("filesystem", {"root": tmp_path, "bandwidth_limit": -5})


@pytest.mark.parametrize("text,expected", [("10 MiB/s", 10 << 20), ("500 KB/s", 500_000),
                                           ("8 Mbit/s", 1_000_000), ("1GB/s", 10**9), (4096, 4096)])
def test_bandwidth_phrases(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["fast", "10 parsecs", "100 B/s", "-1 MiB/s"])
def test_bad_bandwidth_phrases_are_refused(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_a_hosts_limit_becomes_rsyncs_bwlimit_in_kib(tmp_path):
    from drfleet.datapath.remote_trees import RSYNC_OPTIONS, rsync_options
    from drfleet.plan.loader import load_plan
    from tests.fixtures.fleet import write_plan

    extra = ("hosts:\n  web: {address: 10.0.0.5, key_file: /k, known_hosts: /kh, bandwidth_limit: 2 MiB/s}\n"
             "  db: {address: 10.0.0.6, key_file: /k, known_hosts: /kh}\n")
    plan = load_plan(write_plan(tmp_path, extra=extra))
    assert rsync_options(plan, "web") == RSYNC_OPTIONS + ["--bwlimit=2048"]
    assert rsync_options(plan, "db") == RSYNC_OPTIONS


def test_every_kind_of_plan_location_takes_a_bandwidth_limit(tmp_path, rclone_local_config):
    from drfleet.datapath.locations import store_for
    from drfleet.plan.loader import load_plan
    from drfleet.providers.storage.rclone import RcloneStore
    from drfleet.providers.storage.s3 import S3Store
    from drfleet.providers.storage.sftp import SftpStore
    from tests.fixtures.fleet import write_plan

    storage = ("slow-s3: {kind: s3, offsite: true, bucket: b, endpoint_url: 'http://127.0.0.1:9', "
               "bandwidth_limit: 1 MiB/s}\n"
               "slow-sftp: {kind: sftp, offsite: true, host: h, path: /srv, key_file: /k, known_hosts: /kh, "
               "bandwidth_limit: 512 KiB/s}\n"
               f"slow-rclone: {{kind: rclone, offsite: true, remote: 'local-test:{tmp_path}/r', "
               f"rclone_config: {rclone_local_config}, bandwidth_limit: 8 Mbit/s}}\n")
    plan = load_plan(write_plan(tmp_path / "plan", storage=storage))
    for name, kind, rate in [("slow-s3", S3Store, 1 << 20), ("slow-sftp", SftpStore, 512 << 10),
                             ("slow-rclone", RcloneStore, 1_000_000)]:
        store = store_for(plan, name)
        assert isinstance(store.inner, ThrottledStore) and isinstance(innermost(store), kind)
        assert store.inner.limit.rate == rate
