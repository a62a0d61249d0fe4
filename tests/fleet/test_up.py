"""`drfleet up` runs a whole fleet in the foreground and Ctrl-C leaves nothing running."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.fixtures.fleet import write_plan
from tests.fixtures.util import wait_for

ROOT = Path(__file__).resolve().parents[2]


def descendants_alive(pids):
    return [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in
            Path(f"/proc/{p}/status").read_text().lower()]


def test_up_starts_workers_per_region_and_ctrl_c_stops_everything(tmp_path):
    plan = write_plan(tmp_path / "plan")
    env = dict(os.environ, DRFLEET_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    for name in ("DRFLEET_BROKER_URL", "DRFLEET_STATE_URL", "DRFLEET_REGION", "DRFLEET_PLAN"):
        env.pop(name, None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "drfleet.cli.main", "up", "--plan", str(plan), "--no-flower"],
                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "fleet up" in (tmp_path / "up.log").read_text(), timeout=60, what="drfleet up")
        assert (tmp_path / "home" / "broker-url").exists()

        def status():
            out = subprocess.run([sys.executable, "-m", "drfleet.cli.main", "status", "--plan", str(plan), "--json"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            report = json.loads(out.stdout)
            return report if len(report["workers"]) == 4 else None

        report = wait_for(status, timeout=90, interval=1, what="four workers to answer")
        assert sorted(q for qs in report["workers"].values() for q in qs) == [
            "eu-central.control", "eu-central.data", "us-east.control", "us-east.data"]
        assert set(report["queues"]) == {"eu-central.control", "eu-central.data", "us-east.control", "us-east.data"}
        tree = _process_tree(up.pid)
        assert len(tree) >= 6  # redis, 4 workers (+ pool children), beat
        up.send_signal(signal.SIGINT)
        up.wait(60)
        assert up.returncode == 0
        wait_for(lambda: not descendants_alive(tree), timeout=30, what="every child to exit")
        assert not (tmp_path / "home" / "broker-url").exists()
    finally:
        if up.poll() is None:
            up.kill()
        log.close()


def _process_tree(root: int) -> list[int]:
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
