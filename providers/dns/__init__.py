"""DNS providers for failover: Route 53 (boto3) and Cloudflare (API v4).

``dns_client(settings)`` builds the client for the plan's ``recovery.dns`` section;
``switch_record`` (``providers.dns.base``) switches a record TTL-aware.
"""

from __future__ import annotations

from typing import Any

from providers.dns.base import (DnsClient, DnsError, DnsRecord, DnsZoneNotFound, SwitchResult,
                                switch_record)


def dns_client(settings: Any) -> DnsClient:
    """The client for ``settings`` (a ``runbooks.config.DnsSettings``). Raises DnsError for an
    unknown provider, and SecretUnavailable when a credential reference is unset."""
    if settings.provider == "route53":
        from providers.dns.route53 import Route53Client
        return Route53Client.from_settings(settings)
    if settings.provider == "cloudflare":
        from providers.dns.cloudflare import CloudflareClient
        return CloudflareClient.from_settings(settings)
    raise DnsError(f"unknown DNS provider {settings.provider!r}", known="route53, cloudflare")


__all__ = ["DnsClient", "DnsError", "DnsRecord", "DnsZoneNotFound", "SwitchResult", "dns_client",
           "switch_record"]
