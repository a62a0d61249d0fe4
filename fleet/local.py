"""``drfleet up``: a whole fleet on one machine, supervised.

Starts, as children in their own process groups: the embedded Redis when no fleet Redis is
configured (one password-protected server, or with ``ha`` three servers and three sentinels:
``fleet.embedded_redis``), per region a data-lane and a control-lane worker, ``beats`` beat
processes (one holds RedBeat's lock, the others wait for it) and Flower.

* One fleet per home: ``fleet.home_lock`` refuses a second ``up`` and names the first; the
  CLI finds the running fleet through ``HOME/fleet.env``.
* Every port is checked free before anything starts.
* A child that dies is started again (a standby beat may take the lock meanwhile); a child
  that keeps dying right after its start stops the fleet with its log's name.
* Ctrl-C, SIGTERM and SIGHUP (the terminal closed) stop everything it started: SIGTERM to each
  process group (workers finish or requeue their task), SIGKILL after a grace period. Should
  ``up`` itself be SIGKILLed, each child gets SIGTERM from the kernel (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
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
from drfleet.fleet.embedded_redis import EmbeddedRedis
from drfleet.fleet.home_lock import HomeLock, write_fleet_env
from drfleet.paths import drfleet_home
from drfleet.plan.models import Plan

RESTART_WINDOW_SECONDS = 30
PR_SET_PDEATHSIG = 1  # prctl(2)
MAX_QUICK_RESTARTS = 5


class FleetStartFailed(DrfleetError):
    hint = "read the child's log under DRFLEET_HOME/logs, fix the cause, and run `drfleet up` again"


class PortInUse(FleetStartFailed):
    hint = "stop what listens there, or choose another port (e.g. --flower-port)"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


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
    env: dict
    log: Path
    proc: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.starts = [t for t in self.starts if time.monotonic() - t < RESTART_WINDOW_SECONDS] + [time.monotonic()]

    @property
    def dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None


@dataclass
class LocalFleet:
    plan: Plan
    plan_path: Path
    home: Path = field(default_factory=drfleet_home)
    flower: bool = True
    flower_port: int = 5555
    beats: int = 1
    ha: bool = False
    children: list[Child] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    redis: EmbeddedRedis | None = None

    def start(self, echo=print) -> None:
        """Take the home's lock and start every process. Raises FleetAlreadyRunning,
        PortInUse (before anything starts) and FleetStartFailed (after stopping what started)."""
        self.lock = HomeLock(self.home).acquire()
        try:
            self._start(echo)
        except BaseException:
            self.stop()
            raise

    def _start(self, echo) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        metrics_dir = self.home / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env = dict(os.environ, DRFLEET_PLAN=str(self.plan_path), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                   DRFLEET_HOME=str(self.home), PYTHONUNBUFFERED="1", DRFLEET_TASK_EVENTS="1")
        embedded = not (settings.BROKER_URL.is_set(env) or settings.REDIS_SENTINELS.is_set(env))
        if embedded:
            self.redis = EmbeddedRedis(self.home, ha=self.ha)
        if self.flower and not _port_free(self.flower_port):
            raise PortInUse(f"port {self.flower_port} (Flower) is already in use", port=self.flower_port)
        if embedded:
            for name, argv in self.redis.processes():
                self._spawn(name, argv, env, logs)
            for port in self.redis.all_ports():
                if not _wait_port(port, 15):
                    raise FleetStartFailed("the embedded Redis did not start", port=port, log=str(logs))
            if not self.redis.wait_replicas(timeout=30):
                raise FleetStartFailed("the embedded Redis replicas did not catch up with the master", log=str(logs))
            env.update(self.redis.env())
            env.pop("DRFLEET_STATE_URL", None)
            env.pop("DRFLEET_RESULT_URL", None)
            self._write_embedded_url()
            echo(f"redis      embedded, {'3 servers + 3 sentinels' if self.ha else 'one server'} on loopback "
                 f"(password in {self.redis.password_file})")
        self.env = env
        celery = [sys.executable, "-m", "celery", "-A", "drfleet.workers"]
        for region in self.plan.region_names:
            for lane in ("data", "control"):
                self._spawn(f"worker-{region}-{lane}", celery + [
                    "worker", "--region", region, "--lane", lane, "-c", "1", "-l", "INFO",
                    "-n", f"{lane}-{region}@%h", "-E"], env, logs)
                echo(f"worker     {region} {lane} lane")
        for i in range(self.beats):
            self._spawn(f"beat-{i}", celery + ["beat", "-l", "INFO", "-s", str(self.home / f"beat-{i}.schedule")],
                        env, logs)
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
        write_fleet_env(self.home, {k: v for k, v in env.items() if k.startswith("DRFLEET_REDIS_")
                                    or k in ("DRFLEET_BROKER_URL", "DRFLEET_PLAN")})

    def _write_embedded_url(self) -> None:
        """The embedded Redis's URL with its password, 0600, for a dataset that backs it up
        (the demo plan's ``cache``: ``{file: HOME/embedded-redis.url}``)."""
        path = self.home / "embedded-redis.url"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.redis.url_with_password() + "\n")

    def _flower_password(self) -> str:
        path = self.home / "flower-password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(18))
        return path.read_text().strip()

    def _spawn(self, name: str, argv: list[str], env: dict, logs: Path) -> Child:
        child = Child(name, argv, env, logs / f"{name}.log")
        child.start()
        self.children.append(child)
        return child

    def supervise_once(self, echo=print) -> None:
        """Start again every child that died. Raises FleetStartFailed when one died more than
        MAX_QUICK_RESTARTS times within RESTART_WINDOW_SECONDS."""
        for child in self.children:
            if not child.dead:
                continue
            code = child.proc.returncode
            if len(child.starts) > MAX_QUICK_RESTARTS:
                raise FleetStartFailed(f"{child.name} keeps exiting (status {code}) right after it starts",
                                       log=str(child.log))
            echo(f"{child.name} exited with status {code}; starting it again (log: {child.log})")
            child.start()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child's process group, then SIGKILL whatever is left after
        ``grace`` seconds; release the home. Idempotent."""
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
        lock = getattr(self, "lock", None)
        if lock is not None:
            (self.home / "embedded-redis.url").unlink(missing_ok=True)
            lock.release()
            self.lock = None

    def run_forever(self, echo=print) -> int:
        """Supervise until Ctrl-C, SIGTERM or SIGHUP (0), or a child that cannot stay up (1);
        then stop everything."""
        stop = {"now": False}

        def on_signal(signum, frame):
            stop["now"] = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        status = 0
        try:
            while not stop["now"]:
                try:
                    self.supervise_once(echo)
                except FleetStartFailed as exc:
                    echo(f"error: {exc}")
                    status = 1
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            echo("stopping the fleet ...")
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM this process when ``drfleet up`` dies, even by
    SIGKILL, so a supervisor that cannot clean up still leaves nothing running."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _signal_group(child: Child, sig: int) -> None:
    if child.proc is None or child.proc.poll() is not None and sig == signal.SIGTERM:
        return
    try:
        os.killpg(child.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
