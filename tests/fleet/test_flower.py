"""Flower, as `drfleet up` runs it (basic auth), after real backups on real workers: its
task API shows readable task names and none of the secrets, and a headless Chromium logs
in, finds the backup on the tasks page and saves a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.util import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CACHE_PASSWORD = "cache-pw-Flower-8d31"
ARTIFACTS = Path(os.environ.get("DRFLEET_TEST_ARTIFACTS", ROOT / ".drfleet" / "test-artifacts"))


def chromium() -> str | None:
    return next((path for path in (shutil.which(name) for name in
                                   ("chromium", "chromium-browser", "google-chrome")) if path), None)


class FlowerFleet:
    def __init__(self, tmp: Path, cache: RedisServer) -> None:
        src = tmp / "plan" / "src" / "site"
        src.mkdir(parents=True)
        (src / "index.html").write_text("hello from flower test\n")
        hourly = policy("hourly", "hourly", "24 hours")
        datasets = (dataset("site", hourly, source=src)
                    + dataset("cache", hourly, kind="redis", connection="SHOP_CACHE_URL"))
        self.plan = write_plan(tmp / "plan", regions=("eu-central",), datasets=datasets)
        self.home = tmp / "home"
        self.port = free_port()
        self.cache_url = cache.url
        self.env = dict(os.environ, DRFLEET_HOME=str(self.home), PYTHONPATH=str(ROOT), SHOP_CACHE_URL=cache.url)
        for name in ("DRFLEET_BROKER_URL", "DRFLEET_STATE_URL", "DRFLEET_RESULT_URL", "DRFLEET_REGION",
                     "DRFLEET_PLAN", "DRFLEET_FLOWER_PASSWORD", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)
        self.up: subprocess.Popen | None = None
        self.backups: dict[str, dict] = {}

    def drfleet(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "drfleet.cli.main", *args, "--plan", str(self.plan)], cwd=ROOT,
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    def start(self) -> None:
        (self.plan.parent / "keys").mkdir(mode=0o700)
        self.drfleet("keys", "create", "content")
        log = open(self.plan.parent.parent / "up.log", "wb")
        self.up = subprocess.Popen([sys.executable, "-m", "drfleet.cli.main", "up", "--plan", str(self.plan),
                                    "--flower-port", str(self.port)], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: "fleet up" in self.up_log() or self.up.poll() is not None, timeout=90, what="drfleet up")
        assert self.up.poll() is None, self.up_log()
        wait_for(lambda: requests.get(self.url("/api/workers"), auth=self.auth, timeout=5).ok,
                 timeout=60, interval=0.5, what="Flower to answer")
        for name in ("site", "cache"):
            out = self.drfleet("backup", name, "--wait", "--json")
            self.backups[name] = json.loads(out.stdout[out.stdout.index("{"):])

        def both_seen():
            tasks = self.tasks()
            done = [t for t in tasks.values() if t.get("state") == "SUCCESS" and
                    str(t.get("name", "")).startswith("backup ")]
            return tasks if len(done) == 2 else None

        wait_for(both_seen, timeout=60, interval=0.5, what="Flower to show both backups as succeeded")

    def up_log(self) -> str:
        return (self.plan.parent.parent / "up.log").read_text(errors="replace")

    @property
    def auth(self) -> tuple[str, str]:
        return ("drfleet", (self.home / "flower-password").read_text().strip())

    def url(self, path: str, *, with_credentials: bool = False) -> str:
        cred = "{}:{}@".format(*self.auth) if with_credentials else ""
        return f"http://{cred}127.0.0.1:{self.port}{path}"

    def tasks(self) -> dict:
        response = requests.get(self.url("/api/tasks"), auth=self.auth, timeout=10)
        response.raise_for_status()
        return response.json()

    def secrets(self) -> list[str]:
        """Every form of every secret the fleet holds: the source's password and URL, and
        the master key material."""
        keyring = json.loads((self.plan.parent / "keys" / "content.keyring").read_text())
        values = [CACHE_PASSWORD, self.cache_url, self.auth[1]]
        for key in keyring["keys"]:
            raw = base64.b64decode(key["material"])
            values += [key["material"], raw.hex(), base64.urlsafe_b64encode(raw).decode()]
        return values

    def stop(self) -> None:
        if self.up and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(60)
            except subprocess.TimeoutExpired:
                self.up.kill()


@pytest.fixture(scope="module")
def flower_fleet(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    cache = RedisServer(password=CACHE_PASSWORD, extra_args=["--repl-diskless-sync-delay", "0"]).start()
    cache.client().set("basket:42", "3 apples")
    fleet = FlowerFleet(tmp_path_factory.mktemp("flower"), cache)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        cache.cleanup()


def test_flower_requires_basic_auth_and_its_password_is_not_in_any_command_line(flower_fleet):
    assert requests.get(flower_fleet.url("/api/tasks"), timeout=10).status_code == 401
    assert requests.get(flower_fleet.url("/api/tasks"), auth=("drfleet", "wrong"), timeout=10).status_code == 401
    password = flower_fleet.auth[1].encode()
    command_lines = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command_lines.append((proc / "cmdline").read_bytes())
        except OSError:
            continue
    assert any(b"flower" in line for line in command_lines)
    assert [line for line in command_lines if password in line] == []  # `ps` shows it to every user


def test_flower_task_api_shows_readable_names_and_no_secrets(flower_fleet):
    tasks = flower_fleet.tasks()
    names = sorted(t["name"] for t in tasks.values() if str(t.get("name", "")).startswith("backup "))
    assert names == ["backup cache hourly", "backup site hourly"]
    by_name = {t["name"]: t for t in tasks.values()}
    assert flower_fleet.backups["site"]["backup_id"] in by_name["backup site hourly"]["result"]
    assert "'dataset': 'cache'" in by_name["backup cache hourly"]["kwargs"]
    # everything Flower holds about every task and worker (with its configuration), and its
    # task pages, in one text
    everything = json.dumps(tasks)
    everything += requests.get(flower_fleet.url("/api/workers?refresh=1"), auth=flower_fleet.auth, timeout=30).text
    for task_id in tasks:
        everything += requests.get(flower_fleet.url(f"/api/task/info/{task_id}"), auth=flower_fleet.auth,
                                   timeout=10).text
        everything += requests.get(flower_fleet.url(f"/task/{task_id}"), auth=flower_fleet.auth, timeout=10).text
    leaked = [secret for secret in flower_fleet.secrets() if secret in everything]
    assert leaked == []


def test_headless_chromium_logs_in_and_finds_the_backup_on_the_tasks_page(flower_fleet):
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); "
                    "the Flower browser test needs /usr/bin/chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = ARTIFACTS / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    # basic-auth credentials in the URL log in; the tasks table is filled by JavaScript,
    # so let the page run (virtual time) before reading the DOM or taking the picture
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
              "--window-size=1400,900"]
    page = flower_fleet.url("/tasks", with_credentials=True)
    dom = subprocess.run(common + ["--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert "backup site hourly" in dom.stdout, dom.stderr[-2000:]
    assert "backup cache hourly" in dom.stdout
    shot = ARTIFACTS / "flower-tasks.png"
    shot.unlink(missing_ok=True)
    taken = subprocess.run(common + [f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120)
    assert shot.exists(), taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    shutil.rmtree(profile, ignore_errors=True)
