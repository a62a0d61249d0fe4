"""Behaviour every provider client shares, run against each provider's contract server."""

from __future__ import annotations

import logging
from email.utils import formatdate

import pytest

from drfleet.providers.clouds import base
from drfleet.providers.clouds.base import (
    Action,
    ActionFailed,
    ActionTimedOut,
    CloudClient,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    Server,
    ServerSpec,
)
from drfleet.providers.clouds.client import PollBackoff
from tests.providers.clouds.harness import PUBLIC_KEY, Harness

LIST_PATHS = {"hetzner": r"/servers", "digitalocean": r"/droplets",
              "linode": r"/linode/instances", "vultr": r"/instances"}


def test_client_implements_the_interface(cloud: Harness) -> None:
    assert isinstance(cloud.client, CloudClient)
    assert cloud.client.provider == cloud.case.name


def test_list_servers_follows_every_page(cloud: Harness) -> None:
    seeded = cloud.server.seed_servers(5)

    servers = cloud.client.list_servers()

    assert sorted(s.id for s in servers) == sorted(seeded)
    assert all(isinstance(s, Server) and s.provider == cloud.case.name for s in servers)
    assert cloud.server.count("GET", LIST_PATHS[cloud.case.name]) == 3  # 5 servers, 2 a page


def test_list_servers_filters_by_label_selector(cloud: Harness) -> None:
    prod = cloud.server.seed_servers(3, labels={"env": "prod", "role": "db"})
    cloud.server.seed_servers(2, labels={"env": "dev", "role": "db"})
    cloud.server.seed_servers(1, labels={"env": "prod"})

    found = cloud.client.list_servers(label_selector="env=prod,role=db")

    assert sorted(s.id for s in found) == sorted(prod)
    assert all(s.labels == {"env": "prod", "role": "db"} for s in found)


def test_create_then_wait_until_running(cloud: Harness) -> None:
    server, action = cloud.client.create_server(ServerSpec(name="db-1", labels={"role": "db"}))

    assert server.name == "db-1" and server.status == base.STARTING
    assert server.labels == {"role": "db"}
    assert (server.region, server.size) == (cloud.case.defaults["region"],
                                            cloud.case.defaults["size"])
    if cloud.case.has_actions:
        assert isinstance(action, Action) and action.status == base.ACTION_RUNNING
        done = cloud.client.wait_for(action, deadline_seconds=600)
        assert isinstance(done, Action) and done.status == base.ACTION_SUCCESS
    else:
        assert action is None

    running = cloud.client.wait_until_running(server.id, 600)

    assert running.id == server.id and running.is_running and running.ipv4
    assert cloud.clock.sleeps, "the client should have polled with (fake) sleeps"


def test_wait_for_a_server_waits_until_running(cloud: Harness) -> None:
    server, _ = cloud.client.create_server(ServerSpec(name="web-1"))

    result = cloud.client.wait_for(server, deadline_seconds=600,
                                   poll=PollBackoff(initial_seconds=2, factor=1))

    assert isinstance(result, Server) and result.status == base.RUNNING
    assert set(cloud.clock.sleeps) == {2}


def test_failed_action_raises_action_failed(cloud: Harness) -> None:
    if not cloud.case.has_actions:
        pytest.skip(f"{cloud.case.name} has no action objects")
    cloud.server.next_create_outcome("error", code="resource_unavailable",
                                     message="no capacity in this location")
    _, action = cloud.client.create_server(ServerSpec(name="db-2"))
    assert action is not None

    with pytest.raises(ActionFailed) as raised:
        cloud.client.wait_for(action, deadline_seconds=600)

    assert raised.value.action_id == action.id
    assert raised.value.provider == cloud.case.name and raised.value.code
    assert action.id in str(raised.value)


def test_never_finishing_work_times_out_at_the_deadline(cloud: Harness) -> None:
    cloud.server.next_create_outcome("never")
    server, action = cloud.client.create_server(ServerSpec(name="stuck-1"))

    with pytest.raises(ActionTimedOut) as raised:
        cloud.client.wait_for(action or server, deadline_seconds=300)

    assert raised.value.waited_seconds == pytest.approx(300)
    assert sum(cloud.clock.sleeps) == pytest.approx(300)
    assert max(cloud.clock.sleeps) <= PollBackoff().max_seconds
    assert "300" in str(raised.value)


def test_rate_limit_retry_after_seconds_is_honoured(cloud: Harness) -> None:
    cloud.server.seed_servers(1)
    cloud.server.rate_limit_next(2, retry_after="7")

    assert len(cloud.client.list_servers()) == 1
    assert cloud.clock.sleeps == [7.0, 7.0]


def test_rate_limit_retry_after_http_date_is_honoured(cloud: Harness) -> None:
    cloud.server.rate_limit_next(1, retry_after=formatdate(cloud.clock.now() + 12, usegmt=True))

    assert cloud.client.list_servers() == []
    assert cloud.clock.sleeps == [12.0]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_with_backoff(cloud: Harness, status: int) -> None:
    cloud.server.fail_next(2, status)

    assert cloud.client.list_servers() == []
    assert cloud.clock.sleeps == [1.0, 2.0]  # capped exponential, jitter off in tests
    assert cloud.server.count("GET", LIST_PATHS[cloud.case.name]) == 3


@pytest.mark.parametrize("status", [400, 500])
def test_other_errors_are_not_retried(cloud: Harness, status: int) -> None:
    cloud.server.fail_next(1, status)

    with pytest.raises(ProviderError) as raised:
        cloud.client.list_servers()

    assert type(raised.value) is ProviderError and raised.value.status == status
    assert cloud.server.count("GET", LIST_PATHS[cloud.case.name]) == 1
    assert cloud.clock.sleeps == []


def test_persistent_unavailability_gives_up_after_max_attempts(cloud: Harness) -> None:
    cloud.server.fail_next(10, 503)

    with pytest.raises(ProviderUnavailable) as raised:
        cloud.client.list_servers()

    assert raised.value.status == 503 and raised.value.facts["attempts"] == 4
    assert cloud.server.count("GET", LIST_PATHS[cloud.case.name]) == 4


def test_persistent_rate_limit_raises_rate_limited(cloud: Harness) -> None:
    cloud.server.rate_limit_next(10, retry_after="3")

    with pytest.raises(ProviderRateLimited) as raised:
        cloud.client.list_servers()

    assert raised.value.status == 429 and raised.value.retry_after == 3.0
    assert cloud.clock.sleeps == [3.0, 3.0, 3.0]


def test_rejected_token_raises_auth_error_without_the_token(
        cloud: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-" + cloud.token[::-1]
    monkeypatch.setenv(cloud.case.token_env, wrong)

    with pytest.raises(ProviderAuthError) as raised:
        cloud.client.list_servers()

    error = raised.value
    assert error.status == 401 and error.token_env == cloud.case.token_env
    assert cloud.case.token_env in error.hint
    for text in (str(error), repr(error), repr(error.facts), error.hint):
        assert wrong not in text and cloud.token not in text


def test_unset_token_variable_raises_before_any_request(
        cloud: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cloud.case.token_env)

    with pytest.raises(ProviderAuthError) as raised:
        cloud.client.list_servers()

    assert cloud.case.token_env in str(raised.value)
    assert cloud.server.requests == []


def test_get_missing_server_raises_not_found(cloud: Harness) -> None:
    missing = "999999" if cloud.case.name != "vultr" else "cb676a46-66fd-4dfb-b839-443f2e6c0b60"

    with pytest.raises(ProviderNotFound) as raised:
        cloud.client.get_server(missing)

    assert raised.value.status == 404 and raised.value.provider == cloud.case.name


def test_delete_server(cloud: Harness) -> None:
    [server_id] = cloud.server.seed_servers(1)

    action = cloud.client.delete_server(server_id)

    if action is not None:
        assert cloud.client.wait_for(action, deadline_seconds=60).status == base.ACTION_SUCCESS
    assert cloud.client.list_servers() == []
    with pytest.raises(ProviderNotFound):
        cloud.client.get_server(server_id)


def test_upload_ssh_key_is_idempotent(cloud: Harness) -> None:
    first = cloud.client.upload_ssh_key("ops", PUBLIC_KEY)
    again = cloud.client.upload_ssh_key("ops", PUBLIC_KEY + "\n")

    assert first == again
    assert len(cloud.server.ssh_keys) == 1


def test_token_appears_in_no_error_or_log_record(
        cloud: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = [repr(cloud.client), repr(cloud.client.session)]
    cloud.server.seed_servers(3)
    cloud.server.rate_limit_next(1, retry_after="1")
    cloud.server.fail_next(1, 503)
    cloud.client.list_servers()
    cloud.server.next_create_outcome("never")
    server, action = cloud.client.create_server(ServerSpec(name="audit-1"))
    missing = "0" if cloud.case.name != "vultr" else "0000-0000"

    def persistent_502() -> None:
        cloud.server.fail_next(10, 502)
        cloud.client.list_servers()

    for call in (lambda: cloud.client.get_server(missing),
                 lambda: cloud.client.wait_for(action or server, deadline_seconds=5),
                 persistent_502):
        with pytest.raises(ProviderError) as raised:
            call()
        texts += [str(raised.value), repr(raised.value), repr(raised.value.facts)]
    monkeypatch.setenv(cloud.case.token_env, "not-" + cloud.token)
    with pytest.raises(ProviderAuthError) as raised:
        cloud.client.list_servers()
    texts += [str(raised.value), repr(raised.value.facts)]
    texts += [r.getMessage() for r in caplog.records] + [r.message for r in caplog.records]

    assert any("retrying" in r.getMessage() for r in caplog.records)
    leaked = [t for t in texts if cloud.token in t]
    assert leaked == []
