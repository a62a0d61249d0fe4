"""DNS records and switching them, the same way for every DNS provider.

A client implements ``get_record`` and ``set_record``; ``switch_record`` is the one
TTL-aware switch built on them: it reads the current answer, replaces it (unless it already
is the new answer), and reports until when resolvers and clients may still hold the old
answer (the moment of the switch plus the old record's TTL): traffic is not fully moved
before then, and a runbook's report says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol, runtime_checkable

from drfleet.errors import DrfleetError

DEFAULT_TTL = 60


class DnsError(DrfleetError):
    hint = "check the DNS provider settings in the plan (zone, credentials) and the provider's message"


class DnsAuthError(DnsError):
    """The provider rejected the credentials; the error names where they came from."""

    hint = "check the DNS provider credentials named above"


class DnsZoneNotFound(DnsError):
    hint = "create the zone at the provider, or fix recovery.dns.zone / zone_id in the plan"


@dataclass(frozen=True)
class DnsRecord:
    name: str                 # fully qualified, no trailing dot
    type: str
    values: tuple[str, ...]   # sorted
    ttl: int                  # seconds resolvers may keep the answer
    provider_ttl: int | None = None  # the TTL as the provider stores it, when that differs
    # (Cloudflare's 1 = "automatic", which resolvers see as 300 s): what is written back

    @property
    def ttl_to_keep(self) -> int:
        """The TTL to write when the record's TTL is to stay what it is."""
        return self.provider_ttl if self.provider_ttl is not None else self.ttl


@dataclass(frozen=True)
class SwitchResult:
    name: str
    type: str
    old_values: tuple[str, ...]
    new_values: tuple[str, ...]
    old_ttl: int | None
    new_ttl: int
    changed: bool
    switched_at: float
    clients_may_hold_old_until: float | None   # switched_at + old TTL; None if nothing changed
    change_id: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["old_values"], data["new_values"] = list(self.old_values), list(self.new_values)
        return data


@runtime_checkable
class DnsClient(Protocol):
    provider: str
    zone: str

    def get_record(self, name: str, rtype: str) -> DnsRecord | None:
        """The record set ``name``/``rtype``, or None. Raises DnsError/ProviderError."""

    def set_record(self, name: str, rtype: str, values: list[str], ttl: int) -> str | None:
        """Make the record set exactly ``values`` with ``ttl``; returns a change id."""


def fqdn(name: str, zone: str) -> str:
    """``www`` in ``example.com`` -> ``www.example.com``; a name already in the zone is kept."""
    name, zone = name.rstrip(".").lower(), zone.rstrip(".").lower()
    return name if name == zone or name.endswith("." + zone) else f"{name}.{zone}"


def switch_record(client: DnsClient, name: str, rtype: str, values: list[str], *,
                  ttl: int | None = None, now: Callable[[], float] = time.time) -> SwitchResult:
    """Point ``name``/``rtype`` at ``values`` (idempotent). The new TTL is ``ttl``, else the
    old record's as the provider stores it (an automatic TTL stays automatic), else
    DEFAULT_TTL. Raises what the client raises."""
    name = fqdn(name, client.zone)
    new_values = tuple(sorted(values))
    current = client.get_record(name, rtype)
    new_ttl = ttl or (current.ttl_to_keep if current else DEFAULT_TTL)
    if current and current.values == new_values and current.ttl_to_keep == new_ttl:
        return SwitchResult(name, rtype, current.values, new_values, current.ttl, new_ttl, False,
                            now(), None)
    change_id = client.set_record(name, rtype, list(new_values), new_ttl)
    at = now()
    return SwitchResult(name, rtype, current.values if current else (), new_values,
                        current.ttl if current else None, new_ttl, True, at,
                        at + current.ttl if current else None, change_id)
