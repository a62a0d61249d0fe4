"""Cloudflare DNS through API v4 (https://api.cloudflare.com/client/v4).

From Cloudflare's API documentation: bearer API tokens; every answer is an envelope
``{"success", "errors": [{"code", "message"}], "messages", "result", "result_info":
{"page", "per_page", "count", "total_count", "total_pages"}}``; ``GET /zones?name=``;
``GET /zones/{zone_id}/dns_records?type=&name=&page=&per_page=`` (one record per value);
``POST`` to create, ``PUT /zones/{zone_id}/dns_records/{id}`` to overwrite (idempotent, so
retried like a GET), ``DELETE`` to remove; ``ttl`` is 1 ("automatic", served as 300 s) or 60 to
86400 seconds (from 30 on Enterprise zones): any other TTL is refused here before a request.
An automatic TTL read back is reported as 300 s but written back as 1. The request id is the
``cf-ray`` header.

HTTP, retries (429 with Retry-After, 502/503/504) and error facts come from the cloud
clients' ``JsonSession``; errors are ``ProviderError`` subclasses with Cloudflare's code.
"""

from __future__ import annotations

from typing import Any, Mapping

from drfleet.plan.recovery import CLOUDFLARE_AUTOMATIC_TTL, cloudflare_ttl_problem
from drfleet.providers.dns.base import DnsError, DnsRecord, DnsZoneNotFound
from drfleet.providers.http import ErrorDetail, JsonSession, collect_pages

AUTOMATIC_TTL_SECONDS = 300
PER_PAGE = 100


def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if errors else {}
    return ErrorDetail(code=str(first.get("code")) if first.get("code") is not None else None,
                       message=first.get("message"), request_id=headers.get("cf-ray"))


class CloudflareClient:
    provider = "cloudflare"

    def __init__(self, zone: str, *, zone_id: str | None = None, token_env: str = "CLOUDFLARE_API_TOKEN",
                 base_url: str = "https://api.cloudflare.com/client/v4", enterprise_zone: bool = False,
                 **injected: Any) -> None:
        self.zone = zone.rstrip(".").lower()
        self._zone_id = zone_id
        self.enterprise_zone = enterprise_zone
        self.session = JsonSession(provider="cloudflare", base_url=base_url, token_env=token_env,
                                   parse_error=parse_error, **injected)

    @classmethod
    def from_settings(cls, settings: Any, **injected: Any) -> "CloudflareClient":
        return cls(settings.zone, zone_id=settings.zone_id,
                   token_env=settings.token_env or "CLOUDFLARE_API_TOKEN",
                   base_url=settings.base_url or "https://api.cloudflare.com/client/v4",
                   enterprise_zone=settings.enterprise_zone, **injected)

    def zone_id(self) -> str:
        if self._zone_id:
            return self._zone_id
        zones = self.session.get("/zones", params={"name": self.zone}).body.get("result") or []
        if not zones:
            raise DnsZoneNotFound(f"cloudflare: no zone {self.zone}", provider="cloudflare", zone=self.zone)
        self._zone_id = zones[0]["id"]
        return self._zone_id

    def _records(self, name: str, rtype: str) -> list[dict]:
        zid = self.zone_id()

        def page(cursor: Any) -> tuple[list[dict], Any]:
            number = cursor or 1
            body = self.session.get(f"/zones/{zid}/dns_records",
                                    params={"type": rtype, "name": name, "page": number,
                                            "per_page": PER_PAGE}).body
            info = body.get("result_info") or {}
            more = number < int(info.get("total_pages") or 1)
            return body.get("result") or [], number + 1 if more else None

        records = collect_pages(page, provider="cloudflare")
        return [r for r in records if r["name"].lower() == name.lower() and r["type"] == rtype]

    def get_record(self, name: str, rtype: str) -> DnsRecord | None:
        records = self._records(name, rtype)
        if not records:
            return None
        ttl = int(records[0].get("ttl") or CLOUDFLARE_AUTOMATIC_TTL)
        values = tuple(sorted(r["content"] for r in records))
        if ttl == CLOUDFLARE_AUTOMATIC_TTL:
            return DnsRecord(name, rtype, values, AUTOMATIC_TTL_SECONDS, provider_ttl=ttl)
        return DnsRecord(name, rtype, values, ttl)

    def set_record(self, name: str, rtype: str, values: list[str], ttl: int) -> str | None:
        """Change existing records in place, create missing ones, delete extras.

        Raises DnsError, before any request, when Cloudflare would refuse ``ttl``."""
        problem = cloudflare_ttl_problem(ttl, self.enterprise_zone)
        if problem:
            raise DnsError(f"cloudflare: {problem}", provider="cloudflare", zone=self.zone,
                           record=f"{name} {rtype}", ttl=ttl,
                           hint="set the record's dns.ttl in the plan to 1 or 60..86400")
        zid = self.zone_id()
        existing = sorted(self._records(name, rtype), key=lambda r: r["content"] not in values)
        wanted = list(values)
        ids = []
        for record in existing:
            if wanted:
                value = record["content"] if record["content"] in wanted else wanted[0]
                wanted.remove(value)
                if record["content"] != value or int(record.get("ttl") or 1) != ttl:
                    self.session.request("PUT", f"/zones/{zid}/dns_records/{record['id']}",
                                         json={"type": rtype, "name": name, "content": value,
                                               "ttl": ttl, "proxied": bool(record.get("proxied"))})
                ids.append(record["id"])
            else:
                self.session.delete(f"/zones/{zid}/dns_records/{record['id']}")
        for value in wanted:
            created = self.session.post(f"/zones/{zid}/dns_records",
                                        json={"type": rtype, "name": name, "content": value,
                                              "ttl": ttl, "proxied": False}).body
            ids.append(created["result"]["id"])
        return ",".join(ids) or None
