"""Hetzner-specific behaviour: request shapes, error parsing, actions, labels, SSH keys."""

from __future__ import annotations

import pytest

from drfleet.providers.clouds.base import (
    ActionFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ServerSpec,
)
from drfleet.providers.clouds.hetzner import HetznerClient, one_request_refill
from tests.contract_servers.hetzner import md5_fingerprint
from tests.providers.clouds.harness import OTHER_KEY, PUBLIC_KEY, Harness


def test_create_sends_the_documented_body(hetzner: Harness) -> None:
    key_id = hetzner.client.upload_ssh_key("ops", PUBLIC_KEY)

    server, action = hetzner.client.create_server(ServerSpec(
        name="db-1", region="nbg1", size="cpx21", labels={"role": "db"},
        ssh_key_ids=(key_id,), user_data="#cloud-config\n"))

    [request] = hetzner.server.matching("POST", r"/servers")
    assert request.body == {"name": "db-1", "server_type": "cpx21", "image": "ubuntu-24.04",
                            "location": "nbg1", "labels": {"role": "db"},
                            "start_after_create": True, "ssh_keys": [int(key_id)],
                            "user_data": "#cloud-config\n"}
    assert server.provider_status == "initializing" and server.region == "nbg1"
    assert action is not None and action.command == "create_server"
    assert action.resource_id == server.id


def test_actions_are_polled_at_actions_id(hetzner: Harness) -> None:
    _, action = hetzner.client.create_server(ServerSpec(name="web-1"))

    hetzner.client.wait_for(action, deadline_seconds=60)

    assert hetzner.server.count("GET", rf"/actions/{action.id}") == 2


def test_failed_action_carries_hetzners_error_code(hetzner: Harness) -> None:
    hetzner.server.next_create_outcome("error", code="resource_unavailable",
                                       message="location is out of capacity")
    _, action = hetzner.client.create_server(ServerSpec(name="db-2"))

    with pytest.raises(ActionFailed) as raised:
        hetzner.client.wait_for(action, deadline_seconds=60)

    assert raised.value.code == "resource_unavailable"
    assert "location is out of capacity" in str(raised.value)


def test_error_carries_code_and_correlation_id(hetzner: Harness) -> None:
    with pytest.raises(ProviderNotFound) as raised:
        hetzner.client.get_server("424242")

    [request] = hetzner.server.matching("GET", r"/servers/424242")
    assert raised.value.code == "not_found"
    assert raised.value.request_id == request.request_id
    assert request.request_id in str(raised.value)


def test_duplicate_name_is_a_uniqueness_error_not_retried(hetzner: Harness) -> None:
    hetzner.client.create_server(ServerSpec(name="db-1"))

    with pytest.raises(ProviderError) as raised:
        hetzner.client.create_server(ServerSpec(name="db-1"))

    assert raised.value.status == 409 and raised.value.code == "uniqueness_error"
    assert hetzner.server.count("POST", r"/servers") == 2


def test_label_selector_is_sent_to_the_api(hetzner: Harness) -> None:
    hetzner.server.seed_servers(3, labels={"env": "prod"})
    hetzner.server.seed_servers(2, labels={"env": "dev"})

    assert len(hetzner.client.list_servers("env=prod")) == 3

    pages = hetzner.server.matching("GET", r"/servers")
    assert [r.arg("page") for r in pages] == ["1", "2"]
    assert {r.arg("label_selector") for r in pages} == {"env=prod"}
    assert {r.arg("per_page") for r in pages} == {"50"}


def test_delete_returns_the_delete_action(hetzner: Harness) -> None:
    [server_id] = hetzner.server.seed_servers(1)

    action = hetzner.client.delete_server(server_id)

    assert action is not None and action.command == "delete_server"
    assert action.resource_id == server_id


def test_ssh_key_is_found_by_fingerprint_before_uploading(hetzner: Harness) -> None:
    first = hetzner.client.upload_ssh_key("ops", PUBLIC_KEY)
    second = hetzner.client.upload_ssh_key("ops-renamed", PUBLIC_KEY)
    other = hetzner.client.upload_ssh_key("other", OTHER_KEY)

    assert first == second != other
    assert hetzner.server.count("POST", r"/ssh_keys") == 2
    lookups = hetzner.server.matching("GET", r"/ssh_keys")
    assert all(len((r.arg("fingerprint") or "").split(":")) == 16 for r in lookups)


def test_ssh_key_name_taken_by_another_key_is_reported(hetzner: Harness) -> None:
    hetzner.client.upload_ssh_key("ops", PUBLIC_KEY)

    with pytest.raises(ProviderError) as raised:
        hetzner.client.upload_ssh_key("ops", OTHER_KEY)

    assert raised.value.code == "uniqueness_error"


def test_rate_limit_without_retry_after_waits_for_one_request_not_the_whole_bucket(
        hetzner: Harness) -> None:
    hetzner.server.now = hetzner.clock.now
    hetzner.server.spent = 3600  # the bucket is empty: RateLimit-Reset is an hour away
    hetzner.server.rate_limit_next(1, retry_after=None)

    assert hetzner.client.list_servers() == []

    # One request refills in 3600 s / 3600 requests: wait 1 s, not the hour to a full bucket.
    assert hetzner.clock.sleeps == [1.0]


@pytest.mark.parametrize("headers,expected", [
    ({"ratelimit-limit": "3600", "ratelimit-remaining": "0", "ratelimit-reset": "1003600"}, 1.0),
    ({"ratelimit-limit": "100", "ratelimit-remaining": "50", "ratelimit-reset": "1000100"}, 2.0),
    ({}, 1.0),
    ({"ratelimit-limit": "x", "ratelimit-remaining": "0", "ratelimit-reset": "1"}, 1.0),
])
def test_one_request_refill_is_time_to_full_over_requests_missing(headers: dict,
                                                                  expected: float) -> None:
    assert one_request_refill(headers, now=1_000_000.0) == expected


def test_a_conflict_is_retried(hetzner: Harness) -> None:
    hetzner.server.fail_next(1, 409, method="POST", path="/servers", body={"error": {
        "code": "conflict", "message": "The resource has changed during the request, "
                                      "please retry", "details": {}}})

    server, _ = hetzner.client.create_server(ServerSpec(name="db-1"))

    assert server.name == "db-1" and hetzner.server.count("POST", r"/servers") == 2
    assert hetzner.clock.sleeps == [1.0]


def test_retry_after_beyond_the_limit_is_not_slept(hetzner: Harness) -> None:
    hetzner.server.rate_limit_next(1, retry_after="3600")

    with pytest.raises(ProviderRateLimited) as raised:
        hetzner.client.list_servers()

    assert raised.value.retry_after == 3600 and raised.value.code == "rate_limit_exceeded"
    assert hetzner.clock.sleeps == []


def test_from_plan_defaults_and_overrides() -> None:
    client = HetznerClient.from_plan({"token_env": "MY_HCLOUD", "region": "hel1"})

    assert client.session.base_url == "https://api.hetzner.cloud/v1"
    assert client.session.token_env == "MY_HCLOUD"
    assert client.defaults == {"region": "hel1", "size": None, "image": None}


def test_concurrent_upload_of_the_same_key_resolves_to_its_id(hetzner: Harness) -> None:
    def racing_worker_uploads() -> None:
        hetzner.server.ssh_keys["77"] = {"id": 77, "name": "ops", "public_key": PUBLIC_KEY,
                                         "fingerprint": md5_fingerprint(PUBLIC_KEY),
                                         "labels": {}, "created": "2024-01-01T00:00:00+00:00"}

    hetzner.server.fail_next(1, 409, method="POST", path="/ssh_keys", effect=racing_worker_uploads,
                             body={"error": {"code": "uniqueness_error",
                                             "message": "SSH key not unique", "details": {}}})

    assert hetzner.client.upload_ssh_key("ops", PUBLIC_KEY) == "77"
