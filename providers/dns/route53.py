"""Route 53 through boto3: read and UPSERT a record set in a hosted zone, wait until the
change is INSYNC.

Credentials: the plan's ``access_key``/``secret_key`` references (resolved here, on the
worker), else boto3's own chain. ``endpoint_url`` points at another implementation of the
API (moto's server in the tests). Errors are DnsError carrying AWS's error code and request
id; a zone that does not exist is DnsZoneNotFound; credentials AWS rejects (HTTP 401/403 or
an authentication error code) are DnsAuthError naming where the credentials came from
(``env:VAR``/``file:PATH``), never their values.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from drfleet.providers.dns.base import DnsAuthError, DnsError, DnsRecord, DnsZoneNotFound

AUTH_CODES = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied",
                        "AccessDeniedException", "InvalidSignatureException", "ExpiredToken",
                        "UnrecognizedClientException", "IncompleteSignature",
                        "MissingAuthenticationToken"})
DEFAULT_CHAIN = "boto3's default credential chain"


def _error(exc: Exception, what: str, credentials: str = DEFAULT_CHAIN, **facts: Any) -> DnsError:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code") or None
    message = response.get("Error", {}).get("Message") or str(exc)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    if code in AUTH_CODES or status in (401, 403):
        return DnsAuthError(f"route53 rejected the AWS credentials from {credentials}",
                            provider="route53", aws_code=code, http_status=status,
                            request_id=request_id, credentials=credentials, **facts,
                            hint=f"check the access key and secret in {credentials}: valid, "
                                 "not expired, allowed to change this hosted zone")
    cls = DnsZoneNotFound if code == "NoSuchHostedZone" else DnsError
    return cls(f"route53: {what} failed: {message}", provider="route53", aws_code=code,
               request_id=request_id, **facts)


class Route53Client:
    provider = "route53"

    def __init__(self, zone: str, *, zone_id: str | None = None, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep, sync_timeout: float = 120.0,
                 credentials: str = DEFAULT_CHAIN) -> None:
        self.zone = zone.rstrip(".").lower()
        self.credentials = credentials  # where they came from, for errors: never the values
        self._zone_id = zone_id
        self._client = client
        self._sleep = sleep
        self._sync_timeout = sync_timeout

    @classmethod
    def from_settings(cls, settings: Any, **injected: Any) -> "Route53Client":
        import boto3

        from drfleet.secrets import resolve_secret

        kwargs: dict[str, Any] = {"region_name": settings.region or "us-east-1"}
        if settings.endpoint_url:
            kwargs["endpoint_url"] = settings.endpoint_url
        if settings.access_key:
            kwargs["aws_access_key_id"] = resolve_secret(settings.access_key, what="route53 access key")
        if settings.secret_key:
            kwargs["aws_secret_access_key"] = resolve_secret(settings.secret_key, what="route53 secret key")
        refs = [ref.describe() for ref in (settings.access_key, settings.secret_key) if ref]
        return cls(settings.zone, zone_id=settings.zone_id,
                   client=boto3.session.Session().client("route53", **kwargs),
                   credentials=" and ".join(refs) or DEFAULT_CHAIN, **injected)

    def zone_id(self) -> str:
        """The hosted zone's id (looked up by name once). Raises DnsZoneNotFound."""
        if self._zone_id:
            return self._zone_id
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = self._client.list_hosted_zones_by_name(DNSName=self.zone + ".", MaxItems="1")
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, "listing hosted zones", zone=self.zone, credentials=self.credentials) from None
        for zone in answer.get("HostedZones", []):
            if zone["Name"].rstrip(".").lower() == self.zone:
                self._zone_id = zone["Id"].rsplit("/", 1)[-1]
                return self._zone_id
        raise DnsZoneNotFound(f"route53: no hosted zone {self.zone}", provider="route53", zone=self.zone)

    def get_record(self, name: str, rtype: str) -> DnsRecord | None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = self._client.list_resource_record_sets(
                HostedZoneId=self.zone_id(), StartRecordName=name + ".", StartRecordType=rtype, MaxItems="1")
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"reading {name} {rtype}", zone=self.zone, credentials=self.credentials) from None
        for rrset in answer.get("ResourceRecordSets", []):
            if rrset["Name"].rstrip(".").lower() == name.lower() and rrset["Type"] == rtype:
                values = tuple(sorted(r["Value"] for r in rrset.get("ResourceRecords", [])))
                return DnsRecord(name, rtype, values, int(rrset.get("TTL", 0)))
        return None

    def set_record(self, name: str, rtype: str, values: list[str], ttl: int) -> str | None:
        """UPSERT the record set and wait until Route 53 reports it INSYNC."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = self._client.change_resource_record_sets(
                HostedZoneId=self.zone_id(),
                ChangeBatch={"Comment": "drfleet failover", "Changes": [{
                    "Action": "UPSERT",
                    "ResourceRecordSet": {"Name": name + ".", "Type": rtype, "TTL": ttl,
                                          "ResourceRecords": [{"Value": v} for v in values]}}]})
            change_id = answer["ChangeInfo"]["Id"]
            deadline = time.monotonic() + self._sync_timeout
            status = answer["ChangeInfo"].get("Status")
            while status != "INSYNC" and time.monotonic() < deadline:
                self._sleep(2)
                status = self._client.get_change(Id=change_id)["ChangeInfo"]["Status"]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"changing {name} {rtype}", zone=self.zone, credentials=self.credentials) from None
        if status != "INSYNC":
            raise DnsError(f"route53: change {change_id} not in sync after {self._sync_timeout:.0f}s",
                           provider="route53", change_id=change_id,
                           hint="Route 53 will usually finish it; check with get-change before retrying")
        return change_id.rsplit("/", 1)[-1]
