"""Test helpers for the VPS provider clients: the provider cases, a fake clock that records
the client's sleeps instead of sleeping, and the harness tying a contract server to a client."""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from drfleet.providers.clouds import open_cloud
from drfleet.providers.clouds.client import BaseCloudClient
from tests.contract_servers.base import ContractServer
from tests.contract_servers.digitalocean import DigitalOceanContract
from tests.contract_servers.hetzner import HetznerContract
from tests.contract_servers.linode import LinodeContract
from tests.contract_servers.vultr import VultrContract


def ed25519_public_key(seed: str, comment: str) -> str:
    """A well-formed OpenSSH ed25519 public key line (the key bytes are a hash of seed)."""
    blob = (struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32)
            + hashlib.sha256(seed.encode()).digest())
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


PUBLIC_KEY = ed25519_public_key("ops", "ops@drfleet")
OTHER_KEY = ed25519_public_key("other", "other@drfleet")


@dataclass(frozen=True)
class ProviderCase:
    name: str
    contract: type[ContractServer]
    token_env: str
    defaults: dict[str, str]
    has_actions: bool          # does create return an Action to poll?


CASES = {
    "hetzner": ProviderCase("hetzner", HetznerContract, "HCLOUD_TOKEN",
                            {"region": "fsn1", "size": "cx22", "image": "ubuntu-24.04"}, True),
    "digitalocean": ProviderCase("digitalocean", DigitalOceanContract, "DIGITALOCEAN_TOKEN",
                                 {"region": "nyc3", "size": "s-1vcpu-1gb",
                                  "image": "ubuntu-24-04-x64"}, True),
    "linode": ProviderCase("linode", LinodeContract, "LINODE_TOKEN",
                           {"region": "us-east", "size": "g6-nanode-1",
                            "image": "linode/ubuntu24.04"}, True),
    "vultr": ProviderCase("vultr", VultrContract, "VULTR_API_KEY",
                          {"region": "ewr", "size": "vc2-1c-1gb", "image": "2284"}, False),
}


@dataclass
class FakeClock:
    """Monotonic clock, wall clock and sleep in one: sleeping advances both clocks."""

    monotonic_now: float = 1000.0
    wall_now: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.monotonic_now

    def now(self) -> float:
        return self.wall_now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.monotonic_now += seconds
        self.wall_now += seconds


@dataclass
class Harness:
    case: ProviderCase
    server: Any
    client: BaseCloudClient
    clock: FakeClock
    token: str

    def make_client(self, **settings: Any) -> BaseCloudClient:
        """Another client on the same server; ``settings`` override the plan settings."""
        return open_cloud(self.case.name, {**self.plan_settings(), **settings},
                         **self.injected())

    def plan_settings(self) -> dict[str, Any]:
        return {"token_env": self.case.token_env, "base_url": self.server.url,
                **self.case.defaults, "timeout_seconds": 5.0, "max_attempts": 4}

    def injected(self) -> dict[str, Any]:
        return {"sleep": self.clock.sleep, "clock": self.clock.monotonic, "now": self.clock.now,
                "jitter": None}
