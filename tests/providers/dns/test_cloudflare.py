"""Cloudflare DNS client against the API v4 contract server."""

from __future__ import annotations

import copy

import pytest

from drfleet.plan.models import Plan
from drfleet.plan.recovery import RecoveryConfigInvalid, recovery_config
from drfleet.providers.clouds.base import ProviderAuthError
from drfleet.providers.dns import DnsError, switch_record
from drfleet.providers.dns.cloudflare import CloudflareClient
from drfleet.runbooks.docs import example_plan
from tests.contract_servers.cloudflare import CloudflareContract

TOKEN = "cf-test-token-0123456789abcdef"


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("CF_TOKEN", TOKEN)
    with CloudflareContract(TOKEN, page_size_cap=2) as server:
        server.zone_id = server.add_zone("example.com")
        yield server
        server.assert_no_violations()


def client(api, **kw) -> CloudflareClient:
    sleeps = kw.pop("sleeps", [])
    return CloudflareClient("example.com", token_env=kw.pop("token_env", "CF_TOKEN"),
                            base_url=api.url, sleep=sleeps.append, jitter=None, **kw)


def test_records_across_several_pages_are_read_and_extras_removed(api) -> None:
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        api.add_record(api.zone_id, "www.example.com", "A", address, ttl=120)

    cf = client(api)
    assert cf.get_record("www.example.com", "A").values == ("192.0.2.1", "192.0.2.2", "192.0.2.3")
    assert api.count("GET", r"/zones/[0-9a-f]+/dns_records") == 2

    switch_record(cf, "www.example.com", "A", ["192.0.2.2"])
    assert api.answer("www.example.com", "A") == ["192.0.2.2"]
    assert api.count("DELETE", r"/zones/[0-9a-f]+/dns_records/[0-9a-f]+") == 2


def test_switching_to_the_current_answer_changes_nothing(api) -> None:
    api.add_record(api.zone_id, "www.example.com", "A", "192.0.2.10", ttl=60)

    result = switch_record(client(api), "www", "A", ["192.0.2.10"])

    assert not result.changed and result.clients_may_hold_old_until is None
    assert api.count("PUT", r".*") == 0 and api.count("POST", r".*") == 0


def test_a_missing_record_is_created_and_automatic_ttl_counts_as_300s(api) -> None:
    result = switch_record(client(api), "db", "A", ["192.0.2.5"], ttl=60)
    assert result.changed and result.old_values == () and api.answer("db.example.com", "A") == ["192.0.2.5"]

    api.add_record(api.zone_id, "auto.example.com", "A", "192.0.2.6", ttl=1)
    assert client(api).get_record("auto.example.com", "A").ttl == 300


def test_rate_limit_is_retried_after_retry_after(api) -> None:
    api.add_record(api.zone_id, "www.example.com", "A", "192.0.2.10", ttl=60)
    api.rate_limit_next(1, retry_after="3")
    sleeps: list[float] = []

    switch_record(client(api, sleeps=sleeps), "www", "A", ["192.0.2.11"])

    assert sleeps == [3.0]
    assert api.answer("www.example.com", "A") == ["192.0.2.11"]


def test_a_rejected_token_is_an_auth_error_without_the_token(api, monkeypatch) -> None:
    monkeypatch.setenv("CF_WRONG", "wrong-token-value-xyz")

    with pytest.raises(ProviderAuthError) as raised:
        client(api, token_env="CF_WRONG").get_record("www.example.com", "A")

    assert "CF_WRONG" in str(raised.value) and "wrong-token-value-xyz" not in str(raised.value)
    assert raised.value.code == "10000" and raised.value.request_id.endswith("-FRA")


@pytest.mark.parametrize("ttl", [2, 29, 30, 59, 86401])
def test_a_ttl_cloudflare_refuses_is_refused_before_any_change(api, ttl: int) -> None:
    api.add_record(api.zone_id, "www.example.com", "A", "192.0.2.10", ttl=300)

    with pytest.raises(DnsError) as raised:
        switch_record(client(api), "www", "A", ["198.51.100.7"], ttl=ttl)

    assert raised.value.facts["ttl"] == ttl and "1 (automatic) or 60 to 86400" in str(raised.value)
    assert api.count("PUT", r".*") == api.count("POST", r".*") == 0
    assert api.answer("www.example.com", "A") == ["192.0.2.10"]


@pytest.mark.parametrize("ttl", [1, 60, 86400])
def test_automatic_and_60_to_86400_are_written(api, ttl: int) -> None:
    switch_record(client(api), "www", "A", ["198.51.100.7"], ttl=ttl)

    [create] = api.matching("POST", r"/zones/[0-9a-f]+/dns_records")
    assert create.body["ttl"] == ttl


def test_an_enterprise_zone_takes_30_seconds_but_not_29(api) -> None:
    api.zones[api.zone_id]["plan"].update(id="enterprise", legacy_id="enterprise")
    cf = client(api, enterprise_zone=True)

    assert switch_record(cf, "www", "A", ["198.51.100.7"], ttl=30).new_ttl == 30
    with pytest.raises(DnsError):
        switch_record(cf, "www", "A", ["198.51.100.8"], ttl=29)


def test_an_automatic_ttl_is_written_back_as_automatic(api) -> None:
    api.add_record(api.zone_id, "www.example.com", "A", "192.0.2.10", ttl=1)

    result = switch_record(client(api), "www", "A", ["198.51.100.7"], now=lambda: 1000.0)

    [put] = api.matching("PUT", r"/zones/[0-9a-f]+/dns_records/[0-9a-f]+")
    assert put.body["ttl"] == 1
    assert result.old_ttl == 300 and result.clients_may_hold_old_until == 1300.0
    again = switch_record(client(api), "www", "A", ["198.51.100.7"])
    assert not again.changed


def _recovery_with_ttl(ttl: int, **dns: object) -> Plan:
    plan = example_plan()
    recovery = copy.deepcopy(plan.recovery)
    recovery["services"]["auth"]["dns"]["ttl"] = ttl
    recovery["dns"].update(dns)
    return plan.model_copy(update={"recovery": recovery})


@pytest.mark.parametrize("ttl", [2, 30, 59, 86401])
def test_a_plan_with_a_ttl_cloudflare_refuses_is_invalid(ttl: int) -> None:
    with pytest.raises(RecoveryConfigInvalid) as raised:
        recovery_config(_recovery_with_ttl(ttl))

    assert any(p.startswith("recovery.services.auth.dns.ttl:") and str(ttl) in p
               for p in raised.value.facts["problems"])


def test_a_plan_may_use_30_seconds_on_an_enterprise_zone() -> None:
    recovery = recovery_config(_recovery_with_ttl(30, enterprise_zone=True))

    assert recovery.services["auth"].dns.ttl == 30 and recovery.dns.enterprise_zone
