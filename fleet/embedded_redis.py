"""The Redis ``drfleet up`` starts when no fleet Redis is configured: one server, or with
``--ha`` three servers (a master and two replicas) and three sentinels (quorum 2), all on
loopback, all requiring a generated password kept 0600 in the home (never on a command
line: each process reads it from its own 0600 config file).

``EmbeddedRedis.processes()`` says what to run (name, argv); ``env()`` is how every drfleet
process reaches it (the settings ``fleet.env`` records for the CLI).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

MASTER_NAME = "drfleet"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def password_file(home: Path) -> Path:
    """``HOME/redis-password`` (0600), generated once and kept across runs."""
    path = home / "redis-password"
    if not path.exists() or not path.read_text().strip():
        _private_file(path, secrets.token_urlsafe(24) + "\n")
    os.chmod(path, 0o600)
    return path


@dataclass
class EmbeddedRedis:
    home: Path
    ha: bool = False
    ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = self.home / "redis"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.password_file = password_file(self.home)
        self.ports = [_free_port() for _ in range(3 if self.ha else 1)]
        self.sentinel_ports = [_free_port() for _ in range(3)] if self.ha else []

    def processes(self) -> list[tuple[str, list[str]]]:
        """(name, argv) of every server and sentinel, the master first."""
        password = self.password_file.read_text().strip()
        out = []
        for i, port in enumerate(self.ports):
            data = self.dir / f"node-{i}"
            data.mkdir(exist_ok=True, mode=0o700)
            lines = [f"port {port}", "bind 127.0.0.1", f"dir {data}", "appendonly yes", "appendfsync everysec",
                     'save ""', "maxmemory-policy noeviction", f"requirepass {password}", f"masterauth {password}"]
            if self.ha:
                lines += ["replica-announce-ip 127.0.0.1", "min-replicas-to-write 1", "min-replicas-max-lag 10",
                          "repl-diskless-sync-delay 0"]
                if i:
                    lines.append(f"replicaof 127.0.0.1 {self.ports[0]}")
            conf = _private_file(data / "redis.conf", "\n".join(lines) + "\n")
            out.append((f"redis-{i}", ["redis-server", str(conf)]))
        for i, port in enumerate(self.sentinel_ports):
            # written afresh for each fleet (its ports are new); a sentinel restarted by the
            # supervisor keeps what it rewrote into it since
            conf = self.dir / f"sentinel-{i}.conf"
            _private_file(conf, "\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}", f"requirepass {password}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports[0]} 2",
                f"sentinel auth-pass {MASTER_NAME} {password}",
                f"sentinel down-after-milliseconds {MASTER_NAME} 2000",
                f"sentinel failover-timeout {MASTER_NAME} 10000"]) + "\n")
            out.append((f"sentinel-{i}", ["redis-server", str(conf), "--sentinel"]))
        return out

    def wait_replicas(self, timeout: float) -> bool:
        """With ``ha``: wait until both replicas are connected to the master (it refuses
        writes without one: ``min-replicas-to-write 1``). True at once without ``ha``."""
        if not self.ha:
            return True
        import redis
        client = redis.Redis(port=self.ports[0], password=self.password_file.read_text().strip(), socket_timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = client.info("replication")
                replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                if len(replicas) >= len(self.ports) - 1 and all(r.get("state") == "online" for r in replicas):
                    return True
            except redis.RedisError:
                pass
            time.sleep(0.1)
        return False

    def all_ports(self) -> list[int]:
        return self.ports + self.sentinel_ports

    def env(self) -> dict[str, str]:
        """The settings that reach this Redis (no password: a file name)."""
        if self.ha:
            return {"DRFLEET_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                    "DRFLEET_REDIS_MASTER": MASTER_NAME, "DRFLEET_REDIS_PASSWORD_FILE": str(self.password_file)}
        return {"DRFLEET_BROKER_URL": f"redis://127.0.0.1:{self.ports[0]}/0",
                "DRFLEET_REDIS_PASSWORD_FILE": str(self.password_file)}

    def url_with_password(self) -> str:
        """The master's URL with the password, for a dataset that backs this Redis up (the
        demo's ``cache``); written only to a 0600 secret file."""
        password = self.password_file.read_text().strip()
        return f"redis://:{password}@127.0.0.1:{self.ports[0]}/1"
