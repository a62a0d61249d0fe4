"""A small world for runbook tests: a fleet SSH key, a ``local`` cloud, a service ``site`` on
a local host ``web-1`` in eu-central, a plan with a recovery section, keyrings, and real
Celery workers pinned to regions."""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from drfleet.providers.clouds import open_cloud
from drfleet.providers.clouds.base import ServerSpec
from drfleet.runbooks.records import RunStore
from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.util import wait_for


class RunbookWorld:
    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp, self.redis_url = tmp, redis_url
        self.key = tmp / "fleet_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.known_hosts = tmp / "known_hosts"
        self.cloud_root = tmp / "local-hosts"
        self.cloud = open_cloud("local", {"root": str(self.cloud_root)})
        self.cloud.upload_ssh_key("fleet", Path(f"{self.key}.pub").read_text())
        self.web1, _ = self.cloud.create_server(ServerSpec(name="web-1"))
        self.known_hosts.write_text(f"[127.0.0.1]:{self.web1.ssh_port} {self.web1.host_key}\n")
        self.env: dict[str, str] = {"DRFLEET_RUNBOOK_STALE_SECONDS": "3"}
        self.fleet: Fleet | None = None
        self.plan_path: Path | None = None

    def host_line(self, name: str, server, region: str = "eu-central") -> str:
        return (f"{name}: {{address: 127.0.0.1, port: {server.ssh_port}, user: root, key_file: {self.key}, "
                f"known_hosts: {self.known_hosts}, region: {region}}}")

    def write(self, *, datasets: str = "", services: str, extra_recovery: str = "", hosts: list[str] | None = None,
              storage: str = "", roots: dict[str, str] | None = None) -> Path:
        hosts_text = "\n".join(["hosts:", "  " + self.host_line("web-1", self.web1), *("  " + h for h in hosts or [])])
        roots_text = "{" + ", ".join(f"{k}: {v}" for k, v in {"web-1": self.web1.root, **(roots or {})}.items()) + "}"
        recovery = textwrap.dedent(f"""\
            recovery:
              ssh: {{user: root, key_file: {self.key}, known_hosts: {self.known_hosts}}}
              clouds:
                eu-central: {{provider: local, root: {self.cloud_root}}}
                us-east: {{provider: local, root: {self.cloud_root}}}
              host_roots: {roots_text}
              approval_poll_seconds: 0.5
            """) + textwrap.indent(services, "  ") + textwrap.indent(extra_recovery, "  ")
        self.plan_path = write_plan(self.tmp / "plan", datasets=datasets, storage=storage,
                                    extra=hosts_text + "\n" + recovery)
        keys = self.tmp / "plan" / "keys"
        if not keys.exists():
            from drfleet.backup_format.keyring import create_keyring
            keys.mkdir(mode=0o700)
            create_keyring(keys / "content.keyring", "content")
            create_keyring(keys / "offsite.keyring", "offsite")
        return self.plan_path

    def start_fleet(self, monkeypatch, *regions: str) -> Fleet:
        monkeypatch.setenv("DRFLEET_PLAN", str(self.plan_path))
        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        self.fleet = Fleet(self.tmp, self.redis_url, self.plan_path, env_extra=self.env)
        for region in regions or ("eu-central",):
            self.fleet.worker(region)
        return self.fleet

    def wait_run(self, run_id: str, statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                 timeout: float = 120) -> Any:
        store = RunStore()

        def ended():
            run = store.get(run_id)
            return run if run.status in statuses else None
        try:
            return wait_for(ended, timeout=timeout, interval=0.2, what=f"run {run_id} to reach {statuses}")
        except TimeoutError:
            raise AssertionError(f"{store.get(run_id)}\n{store.step_records(run_id)}\n" +
                                 "\n".join(p.output()[-3000:] for p in self.fleet.procs)) from None

    def wait_step(self, run_id: str, step: str, status: str, timeout: float = 60) -> dict:
        store = RunStore()
        return wait_for(lambda: (r := store.step_record(run_id, step))["status"] == status and r,
                        timeout=timeout, interval=0.1, what=f"step {step} to be {status}")

    def wait_polls(self, run_id: str, step: str, polls: int = 3, timeout: float = 60) -> dict:
        """The step's record once it has asked for its approval ``polls`` times."""
        store = RunStore()
        return wait_for(lambda: (r := store.step_record(run_id, step)).get("approval_polls", 0) >= polls and r,
                        timeout=timeout, interval=0.1, what=f"step {step} to poll for its approval {polls} times")

    def stop(self) -> None:
        if self.fleet:
            self.fleet.stop()
        for server in self.cloud.list_servers():
            self.cloud.delete_server(server.id)


def steps_by_status(run_id: str) -> dict[str, str]:
    return {name: rec["status"] for name, rec in RunStore().step_records(run_id).items()}


def now() -> float:
    return time.time()
