"""VPS provider clients behind one small interface (see ``base.CloudClient``).

``get_cloud("hetzner", {"token_env": "HCLOUD_TOKEN", "region": "fsn1", ...})`` builds the
client for a plan's provider section. Modules are imported on first use, by name.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from providers.clouds.base import CloudClient, CloudConfigError

PROVIDERS: dict[str, tuple[str, str]] = {
    "hetzner": ("providers.clouds.hetzner", "HetznerClient"),
    "digitalocean": ("providers.clouds.digitalocean", "DigitalOceanClient"),
    "linode": ("providers.clouds.linode", "LinodeClient"),
    "vultr": ("providers.clouds.vultr", "VultrClient"),
    "local": ("providers.clouds.local", "LocalCloud"),  # sshd hosts on this machine (tests, demo)
}


def get_cloud(name: str, settings: Mapping[str, Any], **injected: Any) -> CloudClient:
    """Return the client for provider ``name`` built from its plan ``settings``.

    ``injected`` (``sleep``, ``clock``, ``now``, ``jitter``, ``environ``) is for tests.
    Raises CloudConfigError for an unknown provider (listing the known ones) or bad settings.
    """
    key = (name or "").strip().lower()
    if key not in PROVIDERS:
        raise CloudConfigError(f"unknown cloud provider {name!r}", known=sorted(PROVIDERS),
                               hint=f"use one of: {', '.join(sorted(PROVIDERS))}")
    module_name, class_name = PROVIDERS[key]
    client_class = getattr(importlib.import_module(module_name), class_name)
    return client_class.from_plan(settings, **injected)


__all__ = ["PROVIDERS", "get_cloud"]
