"""The ``local`` provider: "servers" that are real SSH-reachable hosts on this machine.

Each server is an OpenSSH ``sshd`` (``/usr/sbin/sshd``) listening on its own loopback port,
with its own host key, its own ``authorized_keys`` (the keys uploaded with
``upload_ssh_key``) and its own root directory ``{root}/servers/{id}/fs``: the directory a
runbook treats as that host's ``/`` (``LocalServer.root``; exported to sessions as
``DRFLEET_ROOT``). Every runbook therefore runs end to end (provision, push configuration
over SSH, restore, health checks) without a cloud account.

State lives on disk under ``root`` (settings ``root``, default ``$DRFLEET_HOME/local-hosts``),
so any process of the fleet sees the same servers; sshd runs detached and outlives the
process that created it. ``power_off`` kills a server's sshd (a host dying); ``power_on``
starts it again. Create needs no action polling: the server is running when ``create_server``
returns (``wait_until_running`` works as for the other providers).

Raises CloudConfigError (sshd missing, bad settings), ProviderNotFound (unknown id), and
ProviderError (sshd did not start, with its log tail).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from drfleet.providers.clouds.base import (
    RUNNING,
    STARTING,
    STOPPED,
    Action,
    CloudConfigError,
    ProviderError,
    ProviderNotFound,
    Server,
    ServerSpec,
    labels_match,
    parse_label_selector,
    ssh_key_blob,
)
from drfleet.providers.clouds.client import BaseCloudClient

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
SETTINGS = frozenset({"root", "region", "size", "image", "listen", "start_timeout_seconds"})


@dataclass(frozen=True)
class LocalServer(Server):
    """A ``Server`` plus what reaching it needs: its port, host key and root directory."""

    ssh_port: int = 22
    host_key: str = ""
    root: str = ""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


class LocalCloud(BaseCloudClient):
    provider = "local"
    default_base_url = "local://"
    default_token_env = "DRFLEET_LOCAL_CLOUD_UNUSED"

    def __init__(self, *, root: str | None = None, region: str = "local", size: str = "sshd",
                 image: str = "this-machine", listen: str = "127.0.0.1",
                 start_timeout_seconds: float = 15.0, **injected: Any) -> None:
        super().__init__(region=region, size=size, image=image, **injected)
        if not os.path.exists(SSHD):
            raise CloudConfigError(f"the local provider needs {SSHD}", provider="local",
                                   hint="install openssh-server")
        if root is None:
            from drfleet.paths import drfleet_home
            root = str(drfleet_home() / "local-hosts")
        self.root = Path(root)
        self.listen = listen
        self.start_timeout = start_timeout_seconds
        (self.root / "servers").mkdir(parents=True, exist_ok=True)
        (self.root / "keys").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalCloud(root={str(self.root)!r})"

    @classmethod
    def from_plan(cls, settings: Mapping[str, Any], **injected: Any) -> "LocalCloud":
        """``settings``: ``root``, ``region``, ``size``, ``image``, ``listen``,
        ``start_timeout_seconds``. Raises CloudConfigError for unknown keys."""
        unknown = sorted(set(settings) - SETTINGS)
        if unknown:
            raise CloudConfigError(f"unknown local setting(s): {', '.join(unknown)}",
                                   provider="local", allowed=sorted(SETTINGS))
        injected = {k: v for k, v in injected.items() if k in ("sleep", "clock")}
        return cls(**dict(settings), **injected)

    # ------------------------------------------------------------------ ssh keys

    def upload_ssh_key(self, name: str, public_key: str) -> str:
        """Store the key (idempotent: the same key gets the same id)."""
        kind, blob = ssh_key_blob(public_key)
        key_id = hashlib.sha256(blob).hexdigest()[:16]
        path = self.root / "keys" / f"{key_id}.pub"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(" ".join(public_key.split()[:2]) + f" {name}\n")
            os.replace(tmp, path)
        return key_id

    # ------------------------------------------------------------------ servers

    def _dir(self, server_id: str) -> Path:
        path = self.root / "servers" / str(server_id)
        if not (path / "server.json").exists():
            raise ProviderNotFound(f"local: no server {server_id}", provider="local",
                                   server_id=str(server_id), root=str(self.root))
        return path

    def create_server(self, spec: ServerSpec) -> tuple[LocalServer, Action | None]:
        """Start a new sshd host; returns it running (no action to poll)."""
        spec = self._complete_spec(spec)
        server_id = uuid.uuid4().hex[:12]
        path = self.root / "servers" / server_id
        (path / "fs").mkdir(parents=True)
        key_file = path / "ssh_host_ed25519_key"
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"local-{server_id}",
                        "-f", str(key_file)], check=True, stdout=subprocess.DEVNULL)
        keys = [self.root / "keys" / f"{k}.pub" for k in spec.ssh_key_ids] or \
            sorted((self.root / "keys").glob("*.pub"))
        missing = [k.stem for k in keys if not k.exists()]
        if missing:
            shutil.rmtree(path, ignore_errors=True)
            raise ProviderNotFound("local: unknown ssh key id(s)", provider="local",
                                   ssh_key_ids=", ".join(missing))
        (path / "authorized_keys").write_text("".join(k.read_text() for k in keys))
        record = {"id": server_id, "name": spec.name, "labels": dict(spec.labels),
                  "region": spec.region, "size": spec.size, "image": spec.image,
                  "port": _free_port(self.listen), "created_at": time.time()}
        (path / "server.json").write_text(json.dumps(record))
        self._write_config(path, record["port"])
        self.power_on(server_id)
        return self.get_server(server_id), None

    def _write_config(self, path: Path, port: int) -> None:
        (path / "sshd_config").write_text("\n".join([
            f"Port {port}", f"ListenAddress {self.listen}",
            f"HostKey {path / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {path / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            f"AllowUsers {getpass.getuser()}", "StrictModes no", "UsePAM no", "PermitUserRC no",
            f"PidFile {path / 'sshd.pid'}", f"SetEnv DRFLEET_ROOT={path / 'fs'}",
            "Subsystem sftp internal-sftp", "LogLevel INFO", ""]))

    def power_on(self, server_id: str) -> None:
        """Start the server's sshd (detached) unless it runs; wait until it accepts
        connections. Raises ProviderError with the log tail when it does not start."""
        path = self._dir(server_id)
        record = json.loads((path / "server.json").read_text())
        if self._pid(path) and _port_open(self.listen, record["port"]):
            return
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        done = subprocess.run([SSHD, "-f", str(path / "sshd_config"), "-E", str(path / "sshd.log")],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not (self._pid(path) and _port_open(self.listen, record["port"])):
            if done.returncode != 0 or time.monotonic() > deadline:
                log = (path / "sshd.log").read_text(errors="replace") if (path / "sshd.log").exists() else ""
                raise ProviderError(f"local: sshd of server {server_id} did not start",
                                    provider="local", server_id=server_id, port=record["port"],
                                    stderr_tail=(done.stderr + log)[-1500:])
            time.sleep(0.05)

    def power_off(self, server_id: str) -> None:
        """Kill the server's sshd and its sessions at once (a host dying)."""
        path = self._dir(server_id)
        pid = self._pid(path)
        if pid:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def _pid(self, path: Path) -> int | None:
        try:
            pid = int((path / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _server(self, path: Path) -> LocalServer:
        record = json.loads((path / "server.json").read_text())
        pid = self._pid(path)
        status = RUNNING if pid and _port_open(self.listen, record["port"]) else (STARTING if pid else STOPPED)
        host_key = " ".join((path / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        return LocalServer(provider="local", id=record["id"], name=record["name"], status=status,
                           region=record["region"], size=record["size"], image=record["image"],
                           ipv4=self.listen, ipv6=None, labels=record["labels"],
                           provider_status="sshd running" if pid else "sshd not running",
                           ssh_port=record["port"], host_key=host_key, root=str(path / "fs"))

    def get_server(self, server_id: str) -> LocalServer:
        return self._server(self._dir(server_id))

    def list_servers(self, label_selector: str | None = None) -> list[LocalServer]:
        terms = parse_label_selector(label_selector)
        servers = [self._server(p.parent) for p in sorted((self.root / "servers").glob("*/server.json"))]
        return sorted((s for s in servers if labels_match(s.labels, terms)), key=lambda s: s.id)

    def delete_server(self, server_id: str) -> Action | None:
        """Kill the sshd and remove the server's directory (its root included)."""
        path = self._dir(server_id)
        self.power_off(server_id)
        shutil.rmtree(path, ignore_errors=True)
        return None
