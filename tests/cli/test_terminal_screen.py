"""What an operator sees: `drfleet backup --wait` in a real terminal (tmux), against a real
worker process, read back from the screen."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.fixtures.util import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install -y tmux)")


class Screen:
    """One tmux server of its own (its own socket) with one 80x24 window (the usual terminal)."""

    def __init__(self, tmp_path):
        self.socket = f"drfleet-test-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp_path

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check,
                              timeout=30)

    def run(self, script: str) -> None:
        path = self.tmp / "screen.sh"
        path.write_text(script)
        conf = self.tmp / "tmux.conf"
        conf.write_text("set -g default-size 80x24\n")
        self.tmux("-f", str(conf), "new-session", "-d", "-x", "80", "-y", "24", "-s", "t",
                  f"bash {shlex.quote(str(path))}")

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t", check=False).stdout

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def screen(tmp_path):
    s = Screen(tmp_path)
    yield s
    s.close()


def test_backup_wait_on_a_terminal_shows_progress_and_a_table(fleet, fleet_plan, redis_url, screen, tmp_path):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    keys = fleet_plan.parent / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    create_keyring(keys / "content.keyring", "content")
    (fleet_plan.parent / "src" / "site" / "data.bin").write_bytes(os.urandom(3_000_000))
    run_backup(load_plan(fleet_plan), "site", "hourly", region="eu-central")  # the size the next is estimated by
    fleet.worker("eu-central")
    env = {"DRFLEET_BROKER_URL": redis_url, "DRFLEET_STATE_URL": redis_url, "TZ": "Asia/Kolkata",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "DRFLEET_HOME": os.environ["DRFLEET_HOME"]}
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    drfleet = shlex.quote(str(os.path.join(os.path.dirname(sys.executable), "drfleet")))
    screen.run(f"{exports}{drfleet} backup site --wait --plan {shlex.quote(str(fleet_plan))}\n"
               "echo EXIT=$?\nsleep 120\n")
    wait_for(lambda: "EXIT=" in screen.text(), timeout=90, interval=0.3, what="the backup to end on the screen")
    text = screen.text()
    assert "EXIT=0" in text, text
    # the progress line: label, bar, done of total (the estimate: the last backup's size), percentage
    assert re.search(r"backup site ━{20} committed: 3\.\d\d MB of 3\.\d\d MB \(100%\)", text), text
    # the table: whole words, human sizes and durations, local time zone
    assert re.search(r"status\s+committed", text) and re.search(r"dataset\s+site", text), text
    assert re.search(r"plaintext_size\s+3\.\d\d MB", text), text
    assert re.search(r"seconds\s+\d+(\.\d+)? s\b", text), text
    assert re.search(r"backup_id\s+\d{8}T\d{6}Z-[0-9a-f]{8}\b", text), text
    assert "{" not in text.split("EXIT=")[0].split("backup_id")[0]   # not JSON
    assert all(len(line) <= 80 for line in text.splitlines())
