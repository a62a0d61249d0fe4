"""BaseCloudClient: plan settings, spec defaults and the waiting loop."""

from __future__ import annotations

import pytest

from drfleet.providers.clouds import base
from drfleet.providers.clouds.base import Action, ActionTimedOut, CloudConfigError, ServerSpec
from drfleet.providers.clouds.client import PollBackoff
from drfleet.providers.clouds.hetzner import HetznerClient
from tests.providers.clouds.harness import Harness


def test_poll_backoff_grows_to_its_cap() -> None:
    schedule = PollBackoff(initial_seconds=1, factor=2, max_seconds=5)
    assert [schedule(n) for n in range(5)] == [1, 2, 4, 5, 5]


def test_unknown_plan_settings_are_refused() -> None:
    with pytest.raises(CloudConfigError) as raised:
        HetznerClient.from_plan({"token_env": "HCLOUD_TOKEN", "regoin": "fsn1"})

    assert "regoin" in str(raised.value) and "region" in str(raised.value)


def test_spec_without_defaults_is_refused_before_any_request(hetzner: Harness) -> None:
    client = hetzner.make_client(region=None, size=None, image=None)

    with pytest.raises(CloudConfigError) as raised:
        client.create_server(ServerSpec(name="db-1", region="fsn1"))

    assert "size, image" in str(raised.value)
    assert hetzner.server.requests == []


def test_spec_values_win_over_plan_defaults(hetzner: Harness) -> None:
    server, _ = hetzner.client.create_server(ServerSpec(name="db-1", size="cpx51"))

    assert server.size == "cpx51" and server.region == "fsn1"


def test_the_last_sleep_stops_at_the_deadline(hetzner: Harness) -> None:
    hetzner.server.next_create_outcome("never")
    _, action = hetzner.client.create_server(ServerSpec(name="stuck"))

    with pytest.raises(ActionTimedOut) as raised:
        hetzner.client.wait_for(action, deadline_seconds=30, poll=lambda n: 100)

    assert hetzner.clock.sleeps == [30]
    assert raised.value.facts["polls"] == 2 and raised.value.action_id == action.id
    assert raised.value.facts["last_status"] == "running"


def test_a_finished_action_needs_no_request(hetzner: Harness) -> None:
    done = Action(provider="hetzner", id="1", status=base.ACTION_SUCCESS, command="noop")

    assert hetzner.client.wait_for(done, deadline_seconds=1) is done
    assert hetzner.server.requests == []


def test_wait_for_takes_only_actions_and_servers(hetzner: Harness) -> None:
    with pytest.raises(TypeError):
        hetzner.client.wait_for("1234", deadline_seconds=1)  # type: ignore[arg-type]


def test_server_timeout_names_the_server(hetzner: Harness) -> None:
    hetzner.server.next_create_outcome("never")
    server, _ = hetzner.client.create_server(ServerSpec(name="stuck"))

    with pytest.raises(ActionTimedOut) as raised:
        hetzner.client.wait_until_running(server.id, 10)

    assert raised.value.facts["server_id"] == server.id
    assert raised.value.facts["last_status"] == "initializing"
