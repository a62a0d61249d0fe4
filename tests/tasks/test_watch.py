"""Continuous and on-change policies on a real beat and a real worker, on a compressed
clock (a watch every second): a written file is in a committed backup within the 60 s
bound and its lag is exported; an unchanged tree, or a touch without a content change,
takes no backup."""

import os

import pytest

from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy
from tests.fixtures.util import wait_for


def datasets(*, config, uploads) -> str:
    return (dataset("uploads", policy("realtime", "continuous", "90 days"), source=uploads, rpo="1m")
            + dataset("config", policy("on-change", "on-change", "10 versions"), source=config))


@pytest.fixture
def watch_fleet(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.plan.loader import load_plan

    uploads, config = tmp_path / "uploads", tmp_path / "config"
    uploads.mkdir()
    config.mkdir()
    (uploads / "avatar.png").write_bytes(b"\x89PNG" + bytes(1000))
    (config / "app.conf").write_text("port = 80\n")
    plan_path = write_plan(tmp_path / "plan", datasets=datasets(uploads=uploads, config=config))
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    fleet = Fleet(tmp_path, redis_url, plan_path, env_extra={
        "DRFLEET_WATCH_CONTINUOUS_SECONDS": "1", "DRFLEET_WATCH_ON_CHANGE_SECONDS": "1",
        "DRFLEET_BEAT_MAX_INTERVAL": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    fleet.worker("eu-central", concurrency=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    fleet.beat()
    yield load_plan(plan_path), uploads, config, metrics_dir
    fleet.stop()


def backups(plan, dataset):
    from drfleet.datapath.catalog import list_backups
    return [r.manifest for r in list_backups(plan, dataset).backups]


def restored_files(plan, manifest, target):
    from drfleet.datapath.restore import restore_backup
    restore_backup(plan, f"{manifest.dataset}/{manifest.backup_id}", str(target))
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}


def wait_for_surveys(dataset, policy, count):
    """Block until ``count`` more watches of the policy have surveyed its tree (no clock)."""
    from drfleet.datapath.watch import read_state
    seen = set()
    start = read_state(dataset, policy).surveyed_at
    wait_for(lambda: seen.add(read_state(dataset, policy).surveyed_at) or
             len(seen - {start}) >= count, timeout=60, interval=0.1, what=f"{count} watches of {dataset}")


def lag_metric(metrics_dir, dataset):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    return registry.get_sample_value("drfleet_continuous_lag_seconds", {"dataset": dataset, "policy": "realtime"})


def settled(dataset, policy):
    """The watch has no backup outstanding and its latest generation is committed."""
    from drfleet.datapath.watch import read_state
    state = read_state(dataset, policy)
    return state.sent_task is None and state.generation == state.committed_generation > 0


def test_a_written_file_is_in_a_committed_backup_within_the_bound(watch_fleet, tmp_path):
    plan, uploads, _, metrics_dir = watch_fleet
    baseline = wait_for(lambda: backups(plan, "uploads"), timeout=60, what="the baseline backup")
    assert [m.slot.split(":")[:2] for m in baseline] == [["watch", "1"]]

    staged = tmp_path / "staging" / "2026"
    staged.mkdir(parents=True)
    (staged / "photo.jpg").write_bytes(b"\xff\xd8" + os.urandom(4096))
    os.rename(staged, uploads / "2026")  # one change, as an upload handler's rename is

    def backup_holding_the_photo():
        for m in backups(plan, "uploads"):
            if m.backup_id != baseline[0].backup_id:
                files = restored_files(plan, m, tmp_path / f"restored-{m.backup_id}")
                if files.get("2026/photo.jpg") == (uploads / "2026" / "photo.jpg").read_bytes():
                    return m
    holding = wait_for(backup_holding_the_photo, timeout=60, interval=0.5,
                       what="a committed backup holding the new file, within the 60 s bound")

    from drfleet.datapath.watch import read_state
    wait_for(lambda: settled("uploads", "realtime"), timeout=30, what="the watch to settle")
    state = read_state("uploads", "realtime")
    assert holding.backup_id in {m.backup_id for m in backups(plan, "uploads")}
    lag = wait_for(lambda: lag_metric(metrics_dir, "uploads"), timeout=30, what="the lag metric")
    assert lag == pytest.approx(state.lag_seconds) and lag > 0

    count = len(backups(plan, "uploads"))
    wait_for_surveys("uploads", "realtime", 3)
    assert len(backups(plan, "uploads")) == count, "an unchanged tree took a backup"


def test_on_change_ignores_a_touch_and_backs_up_a_content_change(watch_fleet, tmp_path):
    plan, _, config, _ = watch_fleet
    baseline = wait_for(lambda: backups(plan, "config"), timeout=60, what="the baseline backup")
    wait_for_surveys("config", "on-change", 2)

    conf = config / "app.conf"
    st = os.stat(conf)
    os.utime(conf, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
    conf.write_text("port = 80\n")  # the same bytes again
    wait_for_surveys("config", "on-change", 3)
    assert len(backups(plan, "config")) == len(baseline) == 1

    conf.write_text("port = 8080\n")
    changed = wait_for(lambda: [m for m in backups(plan, "config") if m.backup_id != baseline[0].backup_id],
                       timeout=60, what="a backup of the changed configuration")
    assert restored_files(plan, changed[0], tmp_path / "restored")["app.conf"] == b"port = 8080\n"


def test_watches_and_their_backups_are_sent_by_beat_and_the_watch(watch_fleet):
    plan, *_ = watch_fleet
    wait_for(lambda: backups(plan, "uploads"), timeout=60, what="the baseline backup")
    from drfleet.state import audit
    runs = [r for r in audit.entries(action="drfleet.backup") if r["details"].get("dataset") == "uploads"]
    assert {r["actor"] for r in runs} == {"watch"}
    assert all(r["details"]["slot"].startswith("watch:") for r in runs)
