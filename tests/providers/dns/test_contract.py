"""The DNS contract: the same behaviour from every kind in ``drfleet.providers.dns.DNS``.

Each kind runs against a real server speaking its API: route53 against moto's server (the
session's S3 one, plus one started with authentication enforced for rejected credentials),
cloudflare against its API v4 contract server. A kind added to the registry without a world
here fails ``test_every_dns_kind_has_a_contract_world`` and every test below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest

from drfleet.errors import DrfleetError
from drfleet.plan.recovery import DnsSettings
from drfleet.providers.dns import DNS, DnsClient, DnsZoneNotFound, open_dns, switch_record
from tests.contract_servers.cloudflare import CloudflareContract
from tests.fixtures.util import free_port, port_open, terminate, wait_for

SECRET_MARK = "must-never-be-echoed"


@dataclass
class DnsWorld:
    """One DNS kind, its server, and a zone on it holding nothing yet."""

    kind: str
    zone: str
    settings: Callable[..., DnsSettings]          # settings(**overrides) for this zone
    add: Callable[[str, str, str, int], None]      # add(name, type, value, ttl)
    answer: Callable[[str, str], tuple[list[str], int]]
    credential_env: tuple[str, ...]                # the variables holding the credentials
    rejected: Callable[[], DnsSettings]            # settings whose credentials are refused

    def open(self, **overrides: Any) -> DnsClient:
        return open_dns(self.kind, self.settings(**overrides), sleep=lambda _: None)


# ---------------------------------------------------------------------------- route53


@pytest.fixture(scope="module")
def moto_with_auth() -> Iterator[str]:
    """The endpoint of a moto server that checks credentials (refusing any key it did not
    issue); its answer to an unsigned GET / is an error, so readiness is the open port."""
    executable = Path(sys.executable).parent / "moto_server"
    port = free_port()
    proc = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(port), timeout=30, what=f"moto_server (auth) on {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        terminate(proc)


def route53_world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DnsWorld:
    s3_server = request.getfixturevalue("s3_server")
    r53 = boto3.session.Session().client(
        "route53", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
        aws_access_key_id=s3_server.access_key_id, aws_secret_access_key=s3_server.secret_access_key)
    zone = f"z{uuid.uuid4().hex[:8]}.example.com"
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    monkeypatch.setenv("R53_KEY", s3_server.access_key_id)
    monkeypatch.setenv("R53_SECRET", s3_server.secret_access_key)

    def settings(**overrides: Any) -> DnsSettings:
        values = dict(provider="route53", zone=zone, endpoint_url=s3_server.endpoint_url,
                      region="us-east-1", access_key={"env": "R53_KEY"}, secret_key={"env": "R53_SECRET"})
        return DnsSettings(**{**values, **overrides})

    def add(name: str, rtype: str, value: str, ttl: int) -> None:
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
            "Action": "CREATE", "ResourceRecordSet": {"Name": name + ".", "Type": rtype, "TTL": ttl,
                                                      "ResourceRecords": [{"Value": value}]}}]})

    def answer(name: str, rtype: str) -> tuple[list[str], int]:
        sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        rrset = next(s for s in sets if s["Name"] == name + "." and s["Type"] == rtype)
        return sorted(r["Value"] for r in rrset["ResourceRecords"]), rrset["TTL"]

    def rejected() -> DnsSettings:
        endpoint = request.getfixturevalue("moto_with_auth")
        monkeypatch.setenv("R53_KEY", "AKIAIOSFODNN7EXAMPLE")
        monkeypatch.setenv("R53_SECRET", SECRET_MARK)
        return settings(endpoint_url=endpoint)

    return DnsWorld("route53", zone, settings, add, answer, ("R53_KEY", "R53_SECRET"), rejected)


# ---------------------------------------------------------------------------- cloudflare


def cloudflare_world(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DnsWorld:
    token = "cf-" + uuid.uuid4().hex
    monkeypatch.setenv("CF_TOKEN", token)
    api = CloudflareContract(token).start()

    def stop() -> None:
        api.stop()
        api.assert_no_violations()

    request.addfinalizer(stop)
    zone = f"z{uuid.uuid4().hex[:8]}.example.com"
    zone_id = api.add_zone(zone)

    def settings(**overrides: Any) -> DnsSettings:
        values = dict(provider="cloudflare", zone=zone, token_env="CF_TOKEN", base_url=api.url)
        return DnsSettings(**{**values, **overrides})

    def answer(name: str, rtype: str) -> tuple[list[str], int]:
        records = [r for r in api.records.values() if r["name"] == name and r["type"] == rtype]
        return sorted(r["content"] for r in records), records[0]["ttl"]

    def rejected() -> DnsSettings:
        monkeypatch.setenv("CF_TOKEN", SECRET_MARK)
        return settings()

    return DnsWorld("cloudflare", zone, settings,
                    lambda name, rtype, value, ttl: api.add_record(zone_id, name, rtype, value, ttl),
                    answer, ("CF_TOKEN",), rejected)


WORLDS: dict[str, Callable[[pytest.FixtureRequest, pytest.MonkeyPatch], DnsWorld]] = {
    "route53": route53_world, "cloudflare": cloudflare_world}


@pytest.fixture(params=DNS.kinds())
def dns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DnsWorld:
    world = WORLDS.get(request.param)
    if world is None:
        pytest.fail(f"DNS kind {request.param!r} has no contract world in {__name__}: add one to WORLDS")
    return world(request, monkeypatch)


# ---------------------------------------------------------------------------- the contract


def test_every_dns_kind_has_a_contract_world() -> None:
    assert sorted(WORLDS) == DNS.kinds()


def test_switch_replaces_the_answer_and_reports_the_old_ttl(dns: DnsWorld) -> None:
    dns.add(f"www.{dns.zone}", "A", "192.0.2.10", 300)

    result = switch_record(dns.open(), "www", "A", ["198.51.100.7"], now=lambda: 5000.0)

    assert dns.answer(f"www.{dns.zone}", "A") == (["198.51.100.7"], 300)
    assert result.changed and result.name == f"www.{dns.zone}"
    assert result.old_values == ("192.0.2.10",) and result.new_values == ("198.51.100.7",)
    assert result.old_ttl == 300 and result.new_ttl == 300
    assert result.clients_may_hold_old_until == 5300.0


def test_switching_twice_changes_once(dns: DnsWorld) -> None:
    dns.add(f"www.{dns.zone}", "A", "192.0.2.10", 120)
    client = dns.open()

    first = switch_record(client, "www", "A", ["198.51.100.7"])
    second = switch_record(client, "www", "A", ["198.51.100.7"])

    assert first.changed and not second.changed
    assert second.old_values == second.new_values == ("198.51.100.7",)
    assert second.clients_may_hold_old_until is None


def test_an_unknown_zone_raises_zone_not_found(dns: DnsWorld) -> None:
    absent = f"absent-{uuid.uuid4().hex[:6]}.example.org"

    with pytest.raises(DnsZoneNotFound) as raised:
        dns.open(zone=absent).get_record(f"www.{absent}", "A")

    assert absent in str(raised.value)


def test_a_missing_record_is_reported_the_same_way(dns: DnsWorld) -> None:
    client = dns.open()

    assert client.get_record(f"api.{dns.zone}", "A") is None
    result = switch_record(client, "api", "A", ["198.51.100.8"], ttl=60)

    assert result.changed and result.old_values == () and result.old_ttl is None
    assert result.clients_may_hold_old_until is None
    assert dns.answer(f"api.{dns.zone}", "A") == (["198.51.100.8"], 60)


def _assert_names_variable_not_secret(error: DrfleetError, dns: DnsWorld, secret: str) -> None:
    texts = [str(error), repr(error), repr(error.facts), error.hint or ""]
    assert any(var in str(error) for var in dns.credential_env), str(error)
    assert all(secret not in text for text in texts)


def test_an_unset_credential_variable_is_named(dns: DnsWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = os.environ[dns.credential_env[0]]
    monkeypatch.delenv(dns.credential_env[0])

    with pytest.raises(DrfleetError) as raised:
        dns.open().get_record(f"www.{dns.zone}", "A")

    assert dns.credential_env[0] in str(raised.value)
    _assert_names_variable_not_secret(raised.value, dns, secret)


def test_rejected_credentials_are_a_clear_error_naming_the_variable(dns: DnsWorld) -> None:
    settings = dns.rejected()

    with pytest.raises(DrfleetError) as raised:
        open_dns(dns.kind, settings, sleep=lambda _: None).get_record(f"www.{dns.zone}", "A")

    assert "rejected" in str(raised.value)
    _assert_names_variable_not_secret(raised.value, dns, SECRET_MARK)
