"""VPS provider clients behind one small interface (see ``base.CloudClient``).

``open_cloud("hetzner", {"token_env": "HCLOUD_TOKEN", "region": "fsn1", ...})`` builds the
client for a plan's provider section; ``CLOUDS`` is the registry (the shape every provider
family shares, ``drfleet.registry``), each module imported on first use.
"""

from __future__ import annotations

from typing import Any, Mapping

from drfleet.providers.clouds.base import CloudClient, CloudConfigError
from drfleet.registry import Registry


def _hetzner() -> type:
    from drfleet.providers.clouds.hetzner import HetznerClient
    return HetznerClient


def _digitalocean() -> type:
    from drfleet.providers.clouds.digitalocean import DigitalOceanClient
    return DigitalOceanClient


def _linode() -> type:
    from drfleet.providers.clouds.linode import LinodeClient
    return LinodeClient


def _vultr() -> type:
    from drfleet.providers.clouds.vultr import VultrClient
    return VultrClient


def _local() -> type:  # sshd hosts on this machine (tests, demo)
    from drfleet.providers.clouds.local import LocalCloud
    return LocalCloud


CLOUDS: Registry[type] = Registry("cloud provider", {"hetzner": _hetzner, "digitalocean": _digitalocean,
                                                     "linode": _linode, "vultr": _vultr, "local": _local},
                                  unknown=CloudConfigError)


def open_cloud(kind: str, settings: Mapping[str, Any], **injected: Any) -> CloudClient:
    """Return the client for provider ``kind`` (case and surrounding blanks ignored) built
    from its plan ``settings``.

    ``injected`` (``sleep``, ``clock``, ``now``, ``jitter``, ``environ``) is for tests.
    Raises CloudConfigError for an unknown provider (listing the known ones) or bad settings.
    """
    key = kind.strip().lower() if isinstance(kind, str) else kind
    return CLOUDS.load(key).from_plan(settings, **injected)


__all__ = ["CLOUDS", "open_cloud"]
