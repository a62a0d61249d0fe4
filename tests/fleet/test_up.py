"""`drfleet up` supervises a whole fleet: one per home, a password-protected embedded Redis
(or three servers and three sentinels), dead children started again, and nothing left
running after Ctrl-C, SIGTERM, a closed terminal or even SIGKILL of `up` itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.fixtures.fleet import write_plan
from tests.fixtures.util import wait_for

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ["eu-central.control", "eu-central.data", "us-east.control", "us-east.data"]


def alive(pids):
    return [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in
            Path(f"/proc/{p}/status").read_text().lower()]


def process_tree(root: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True).stdout
    parents = {}
    for line in out.splitlines():
        pid, ppid = map(int, line.split())
        parents.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            tree.append(child)
            todo.append(child)
    return tree


class Up:
    """A `drfleet up` process on its own home, and the CLI run against that home."""

    def __init__(self, tmp: Path, *args: str, regions: tuple[str, ...] = ("eu-central",)) -> None:
        # one region (a data and a control worker) unless a test is about several
        self.tmp, self.home, self.regions = tmp, tmp / "home", regions
        self.plan = write_plan(tmp / "plan", regions=regions)
        self.env = dict(os.environ, DRFLEET_HOME=str(self.home), PYTHONPATH=str(ROOT))
        for name in ("DRFLEET_BROKER_URL", "DRFLEET_STATE_URL", "DRFLEET_REGION", "DRFLEET_PLAN",
                     "DRFLEET_REDIS_SENTINELS", "DRFLEET_REDIS_MASTER", "DRFLEET_REDIS_PASSWORD_FILE"):
            self.env.pop(name, None)
        self.log = tmp / f"up-{len(list(tmp.glob('up-*.log')))}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "drfleet.cli.main", "up", "--plan", str(self.plan),
                                          "--no-flower", *args], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self) -> "Up":
        wait_for(lambda: "fleet up" in self.output() or self.proc.poll() is not None, timeout=90, what="drfleet up")
        assert self.proc.poll() is None, self.output()
        return self

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "drfleet.cli.main", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict | None:
        out = self.cli("status", "--plan", str(self.plan), "--json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def workers_answer(self, count: int | None = None) -> dict:
        count = count or 2 * len(self.regions)
        return wait_for(lambda: (lambda r: r if r and len(r["workers"]) == count else None)(self.status()),
                        timeout=120, interval=1, what=f"{count} workers to answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def up(tmp_path):
    fleet = Up(tmp_path).wait_up()
    yield fleet
    fleet.stop()


@pytest.fixture
def up_two_regions(tmp_path):
    fleet = Up(tmp_path, regions=("eu-central", "us-east")).wait_up()
    yield fleet
    fleet.stop()


def test_up_starts_workers_per_region_and_ctrl_c_stops_everything(up_two_regions):
    up = up_two_regions
    fleet_env = up.home / "fleet.env"
    assert fleet_env.stat().st_mode & 0o777 == 0o600
    report = up.workers_answer()
    assert sorted(q for qs in report["workers"].values() for q in qs) == QUEUES
    assert set(report["queues"]) == set(QUEUES)
    tree = process_tree(up.proc.pid)
    assert len(tree) >= 6  # redis, 4 workers (+ pool children), beat
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(60)
    assert up.proc.returncode == 0
    wait_for(lambda: not alive(tree), timeout=30, what="every child to exit")
    assert not fleet_env.exists()


def test_the_embedded_redis_wants_its_generated_password_and_no_argv_shows_it(up):
    password_file = up.home / "redis-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    url = next(line.split("=", 1)[1] for line in (up.home / "fleet.env").read_text().splitlines()
               if line.startswith("DRFLEET_BROKER_URL="))
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()
    assert redis.Redis.from_url(url, password=password).ping()
    for pid in [up.proc.pid, *process_tree(up.proc.pid)]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert password not in argv


def test_a_second_up_on_the_same_home_is_refused_and_the_first_keeps_running(up, tmp_path):
    up.workers_answer()
    second = Up(tmp_path)
    second.proc.wait(60)
    assert second.proc.returncode != 0
    assert "a fleet is already running on this home" in second.output()
    assert f"pid: {up.proc.pid}" in second.output()
    assert up.proc.poll() is None and up.status() is not None  # the first fleet is untouched


def test_a_dead_worker_or_beat_is_started_again(tmp_path):
    fleet = Up(tmp_path, "--beats", "2").wait_up()
    try:
        fleet.workers_answer()
        worker = next(p for p in process_tree(fleet.proc.pid)
                      if b"--region\x00eu-central\x00--lane\x00data" in Path(f"/proc/{p}/cmdline").read_bytes())
        os.killpg(worker, signal.SIGKILL)
        wait_for(lambda: "worker-eu-central-data exited" in fleet.output(), timeout=30, what="the restart")
        fleet.workers_answer()
        beat = next(p for p in process_tree(fleet.proc.pid)
                    if b"beat\x00" in Path(f"/proc/{p}/cmdline").read_bytes())
        os.killpg(beat, signal.SIGKILL)
        wait_for(lambda: "beat-" in fleet.output() and "starting it again" in fleet.output(), timeout=30,
                 what="beat to be started again")
        assert fleet.proc.poll() is None
    finally:
        fleet.stop()


def test_closing_the_terminal_stops_everything(up):
    tree = process_tree(up.proc.pid)
    up.proc.send_signal(signal.SIGHUP)
    up.proc.wait(60)
    wait_for(lambda: not alive(tree), timeout=30, what="every child to exit")
    assert not (up.home / "fleet.env").exists()


def test_sigkill_of_up_itself_leaves_nothing_running_and_no_stale_fleet(up):
    up.workers_answer()
    tree = process_tree(up.proc.pid)
    up.proc.kill()
    up.proc.wait(10)
    wait_for(lambda: not alive(tree), timeout=60, what="the orphaned children to exit")
    status = up.cli("status", "--plan", str(up.plan))
    assert status.returncode != 0 and "no fleet Redis is configured" in status.stderr
    again = Up(up.tmp).wait_up()  # the stale files do not stop a new fleet
    again.stop()


def test_detach_and_down(tmp_path):
    fleet = Up.__new__(Up)
    fleet.tmp, fleet.home, fleet.regions = tmp_path, tmp_path / "home", ("eu-central",)
    fleet.plan = write_plan(tmp_path / "plan", regions=fleet.regions)
    fleet.env = dict(os.environ, DRFLEET_HOME=str(fleet.home), PYTHONPATH=str(ROOT))
    for name in ("DRFLEET_BROKER_URL", "DRFLEET_STATE_URL", "DRFLEET_PLAN"):
        fleet.env.pop(name, None)
    started = fleet.cli("up", "--detach", "--no-flower", "--plan", str(fleet.plan), timeout=150)
    assert started.returncode == 0, started.stderr
    assert "running in the background" in started.stdout
    fleet.workers_answer()
    stopped = fleet.cli("down", timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert not (fleet.home / "fleet.env").exists()
    assert fleet.cli("down").returncode != 0


def test_ha_runs_three_servers_and_three_sentinels_and_survives_the_master(tmp_path):
    fleet = Up(tmp_path, "--ha").wait_up()
    try:
        report = fleet.workers_answer()
        assert report["broker"].startswith("sentinel://")
        tree = process_tree(fleet.proc.pid)
        servers = [p for p in tree if b"redis-server" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(servers) == 6
        env = dict(line.split("=", 1) for line in (fleet.home / "fleet.env").read_text().splitlines())
        sentinel = env["DRFLEET_REDIS_SENTINELS"].split(",")[0].split(":")[1]
        password = (fleet.home / "redis-password").read_text().strip()
        master_port = int(redis.Redis(port=int(sentinel), password=password).sentinel_get_master_addr_by_name(
            "drfleet")[1])
        master = next(p for p in servers if _port_of(p) == master_port)
        # frozen first (the supervisor would start a killed master again before the sentinels
        # noticed), killed once they promoted a replica: clients see their connections close
        os.kill(master, signal.SIGSTOP)
        wait_for(lambda: int(redis.Redis(port=int(sentinel), password=password).sentinel_get_master_addr_by_name(
            "drfleet")[1]) != master_port, timeout=60, interval=0.5, what="the sentinels to promote a replica")
        os.kill(master, signal.SIGKILL)  # the supervisor starts it again; it rejoins as a replica
        fleet.workers_answer()  # workers and the CLI, through the sentinels, reach the new master
        assert fleet.proc.poll() is None
    finally:
        fleet.stop()


def _port_of(pid: int) -> int | None:
    """The port a redis-server or sentinel listens on (its process title names it)."""
    found = re.search(rb"127\.0\.0\.1:(\d+)", Path(f"/proc/{pid}/cmdline").read_bytes())
    return int(found.group(1)) if found else None
