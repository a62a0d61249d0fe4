"""``drfleet up``: a whole fleet in the foreground on one machine.

Starts, as children in their own process groups: a redis-server on loopback (only when no
broker URL is configured: the embedded default), per region a data-lane and a control-lane
worker, beat, and Flower. Ctrl-C (or SIGTERM) stops everything it started, warm first
(SIGTERM) then SIGKILL after a grace period, so nothing is left running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.paths import drfleet_home
from drfleet.plan.models import Plan


class FleetStartFailed(DrfleetError):
    hint = "read the child's log under DRFLEET_HOME/logs, fix the cause, and run `drfleet up` again"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    log: Path | None = None


@dataclass
class LocalFleet:
    plan: Plan
    plan_path: Path
    home: Path = field(default_factory=drfleet_home)
    flower: bool = True
    flower_port: int = 5555
    beats: int = 1
    children: list[Child] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    broker_env: dict = field(default_factory=dict)  # extra variables naming the embedded broker URL

    def start(self, echo=print) -> None:
        """Start every process; raises FleetStartFailed (after stopping what started)."""
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        metrics_dir = self.home / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env = dict(os.environ, DRFLEET_PLAN=str(self.plan_path), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                   DRFLEET_HOME=str(self.home), PYTHONUNBUFFERED="1", DRFLEET_TASK_EVENTS="1")
        try:
            if not settings.BROKER_URL.get(env):
                port = _free_port()
                redis_dir = self.home / "redis"
                redis_dir.mkdir(exist_ok=True)
                self._spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                      "--dir", str(redis_dir), "--appendonly", "yes",
                                      "--maxmemory-policy", "noeviction", "--save", ""], env, logs)
                if not _wait_port(port, 15):
                    raise FleetStartFailed("the embedded redis-server did not start", log=str(logs / "redis.log"))
                env["DRFLEET_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
                for name in self.broker_env:
                    env.setdefault(name, env["DRFLEET_BROKER_URL"])
                echo(f"redis      embedded broker on 127.0.0.1:{port}")
                (self.home / "broker-url").write_text(env["DRFLEET_BROKER_URL"])
            self.env = env
            celery = [sys.executable, "-m", "celery", "-A", "drfleet.workers"]
            for region in self.plan.region_names:
                for lane in ("data", "control"):
                    self._spawn(f"worker-{region}-{lane}", celery + [
                        "worker", "--region", region, "--lane", lane, "-c", "1", "-l", "INFO",
                        "-n", f"{lane}-{region}@%h", "-E"], env, logs)
                    echo(f"worker     {region} {lane} lane")
            for i in range(self.beats):
                self._spawn(f"beat-{i}", celery + ["beat", "-l", "INFO",
                                                   "-s", str(self.home / f"beat-{i}.schedule")], env, logs)
            echo(f"beat       {self.beats} process(es), RedBeat lock")
            if self.flower:
                user = settings.FLOWER_USER.get(env)
                password = settings.FLOWER_PASSWORD.get(env) or self._flower_password()
                # credentials through Flower's environment, not argv: argv is readable by
                # every local user in `ps`
                self._spawn("flower", celery + ["flower", f"--port={self.flower_port}", "--address=127.0.0.1"],
                            dict(env, FLOWER_BASIC_AUTH=f"{user}:{password}"), logs)
                echo(f"flower     http://127.0.0.1:{self.flower_port} (user {user}, password in "
                     f"{self.home / 'flower-password'})")
        except BaseException:
            self.stop()
            raise

    def _flower_password(self) -> str:
        path = self.home / "flower-password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        return path.read_text().strip()

    def _spawn(self, name: str, argv: list[str], env: dict, logs: Path, quiet_argv: bool = False) -> Child:
        log = logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, argv if not quiet_argv else argv[:6], proc, log)
        self.children.append(child)
        return child

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if c.proc and c.proc.poll() is not None]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child's process group (workers finish or requeue their task),
        then SIGKILL whatever is left after ``grace`` seconds. Idempotent."""
        (self.home / "broker-url").unlink(missing_ok=True)
        for child in reversed(self.children):
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(child, signal.SIGKILL)
            try:
                child.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.children.clear()

    def run_forever(self, echo=print) -> int:
        """Block until Ctrl-C/SIGTERM or a child dies; stop everything; return exit status."""
        stop = {"now": False}

        def on_signal(signum, frame):
            stop["now"] = True

        old = signal.signal(signal.SIGTERM, on_signal)
        old_int = signal.signal(signal.SIGINT, on_signal)
        status = 0
        try:
            while not stop["now"]:
                dead = self.dead_children()
                if dead:
                    for child in dead:
                        echo(f"{child.name} exited with status {child.proc.returncode}; see {child.log}")
                    status = 1
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            echo("stopping the fleet ...")
            self.stop()
            signal.signal(signal.SIGTERM, old)
            signal.signal(signal.SIGINT, old_int)
        return status


def _signal_group(child: Child, sig: int) -> None:
    if child.proc is None or child.proc.poll() is not None and sig == signal.SIGTERM:
        return
    try:
        os.killpg(child.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
