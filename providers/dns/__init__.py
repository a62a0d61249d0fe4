"""DNS providers for failover: Route 53 (boto3) and Cloudflare (API v4).

``open_dns(kind, settings)`` builds the client for the plan's ``recovery.dns`` section
(``plan.recovery.DnsSettings``); ``DNS`` is the registry (the shape every provider family
shares, ``drfleet.registry``); ``switch_record`` (``providers.dns.base``) switches a
record TTL-aware.
"""

from __future__ import annotations

from typing import Any

from drfleet.providers.dns.base import (
    DnsAuthError,
    DnsClient,
    DnsError,
    DnsRecord,
    DnsZoneNotFound,
    SwitchResult,
    switch_record,
)
from drfleet.registry import Registry


def _route53() -> type:
    from drfleet.providers.dns.route53 import Route53Client
    return Route53Client


def _cloudflare() -> type:
    from drfleet.providers.dns.cloudflare import CloudflareClient
    return CloudflareClient


DNS: Registry[type] = Registry("DNS provider", {"route53": _route53, "cloudflare": _cloudflare}, unknown=DnsError)


def open_dns(kind: str, settings: Any, **injected: Any) -> DnsClient:
    """The ``kind`` client for ``settings`` (a ``plan.recovery.DnsSettings``). Raises DnsError
    for an unknown provider, and SecretUnavailable when a credential reference is unset.
    ``injected`` (``sleep``, ``jitter``) is for tests of HTTP providers."""
    return DNS.load(kind).from_settings(settings, **injected)


__all__ = ["DNS", "DnsAuthError", "DnsClient", "DnsError", "DnsRecord", "DnsZoneNotFound", "SwitchResult", "open_dns",
           "switch_record"]
