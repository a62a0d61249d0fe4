"""Route 53 client through boto3 against moto's server (the same process the S3 tests use)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from drfleet.plan.recovery import DnsSettings
from drfleet.providers.dns import DnsZoneNotFound, open_dns, switch_record


@pytest.fixture
def zone(s3_server, monkeypatch):
    """A fresh hosted zone on moto with www -> 192.0.2.10 (TTL 300); returns (name, boto client)."""
    r53 = boto3.session.Session().client("route53", endpoint_url=s3_server.endpoint_url,
                                         region_name="us-east-1", aws_access_key_id=s3_server.access_key_id,
                                         aws_secret_access_key=s3_server.secret_access_key)
    name = f"z{uuid.uuid4().hex[:8]}.example.com"
    zone_id = r53.create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": f"www.{name}.", "Type": "A", "TTL": 300,
                                                  "ResourceRecords": [{"Value": "192.0.2.10"}]}}]})
    monkeypatch.setenv("R53_KEY", s3_server.access_key_id)
    monkeypatch.setenv("R53_SECRET", s3_server.secret_access_key)
    return name, r53, zone_id


def settings(s3_server, zone_name: str) -> DnsSettings:
    return DnsSettings(provider="route53", zone=zone_name, endpoint_url=s3_server.endpoint_url,
                       region="us-east-1", access_key={"env": "R53_KEY"}, secret_key={"env": "R53_SECRET"})


def answer(r53, zone_id: str, name: str) -> tuple[list[str], int]:
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    rrset = next(s for s in sets if s["Name"] == name + "." and s["Type"] == "A")
    return [r["Value"] for r in rrset["ResourceRecords"]], rrset["TTL"]


def test_switch_upserts_the_record_and_reports_the_old_ttl(s3_server, zone) -> None:
    name, r53, zone_id = zone

    result = switch_record(open_dns("route53", settings(s3_server, name)), "www", "A", ["198.51.100.7"],
                           now=lambda: 5000.0)

    assert answer(r53, zone_id, f"www.{name}") == (["198.51.100.7"], 300)
    assert result.old_values == ("192.0.2.10",) and result.old_ttl == 300
    assert result.clients_may_hold_old_until == 5300.0 and result.change_id


def test_switching_twice_changes_once(s3_server, zone) -> None:
    name, _, _ = zone
    client = open_dns("route53", settings(s3_server, name))

    first = switch_record(client, "www", "A", ["198.51.100.7"])
    second = switch_record(client, "www", "A", ["198.51.100.7"])

    assert first.changed and not second.changed


def test_a_new_name_is_created_with_the_given_ttl(s3_server, zone) -> None:
    name, r53, zone_id = zone

    switch_record(open_dns("route53", settings(s3_server, name)), "api", "A", ["198.51.100.8"], ttl=60)

    assert answer(r53, zone_id, f"api.{name}") == (["198.51.100.8"], 60)


def test_a_zone_that_does_not_exist_is_reported(s3_server, zone) -> None:
    with pytest.raises(DnsZoneNotFound) as raised:
        open_dns("route53", settings(s3_server, "absent.example.org")).get_record("www.absent.example.org", "A")
    assert "absent.example.org" in str(raised.value)
