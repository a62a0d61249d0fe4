"""Vultr-specific behaviour: instance shapes and statuses, cursor pagination, no actions."""

from __future__ import annotations

import base64

import pytest

from drfleet.providers.clouds import base
from drfleet.providers.clouds.base import CloudConfigError, ProviderError, ServerSpec
from drfleet.providers.clouds.vultr import VultrClient, normalised_status
from tests.providers.clouds.harness import PUBLIC_KEY, Harness


def test_create_sends_the_documented_body(vultr: Harness) -> None:
    key_id = vultr.client.upload_ssh_key("ops", PUBLIC_KEY)

    server, action = vultr.client.create_server(ServerSpec(
        name="db-1", labels={"role": "db"}, ssh_key_ids=(key_id,), user_data="#cloud-config\n"))

    [request] = vultr.server.matching("POST", r"/instances")
    assert request.body == {"label": "db-1", "hostname": "db-1", "region": "ewr",
                            "plan": "vc2-1c-1gb", "sshkey_id": [key_id], "tags": ["role:db"],
                            "enable_ipv6": True, "os_id": 2284,
                            "user_data": base64.b64encode(b"#cloud-config\n").decode()}
    assert action is None
    assert server.status == base.STARTING and server.ipv4 is None  # main_ip 0.0.0.0


SNAPSHOT = "cb676a46-66fd-4dfb-b839-443f2e6c0b60"


@pytest.mark.parametrize("image,field,value", [
    ("2284", "os_id", 2284),
    ("os:2284", "os_id", 2284),
    (f"snapshot:{SNAPSHOT}", "snapshot_id", SNAPSHOT),
    (SNAPSHOT, "snapshot_id", SNAPSHOT),
    ("app:docker", "image_id", "docker"),
])
def test_each_kind_of_image_goes_in_its_own_field(vultr: Harness, image: str, field: str,
                                                 value: object) -> None:
    vultr.client.create_server(ServerSpec(name="restore-1", image=image))

    [request] = vultr.server.matching("POST", r"/instances")
    sent = {k for k in ("os_id", "snapshot_id", "image_id", "app_id", "iso_id") if k in request.body}
    assert sent == {field} and request.body[field] == value


@pytest.mark.parametrize("image", ["ubuntu-24.04", "wordpress", "os:ubuntu", "snapshot:", "app:"])
def test_an_image_of_no_known_form_is_refused_before_any_request(vultr: Harness,
                                                                 image: str) -> None:
    with pytest.raises(CloudConfigError) as raised:
        vultr.client.create_server(ServerSpec(name="restore-1", image=image))

    assert raised.value.facts["image"] == image and "snapshot:" in raised.value.hint
    assert vultr.server.requests == []


def test_a_plan_default_image_of_no_known_form_is_refused_when_the_client_is_built() -> None:
    with pytest.raises(CloudConfigError):
        VultrClient.from_plan({"image": "ubuntu-24.04"})


def test_running_means_active_running_and_ok(vultr: Harness) -> None:
    server, _ = vultr.client.create_server(ServerSpec(name="web-1"))

    seen = [vultr.client.get_server(server.id) for _ in range(2)]

    assert [s.provider_status for s in seen] == ["active/running/installingbooting",
                                                 "active/running/ok"]
    assert [s.status for s in seen] == [base.STARTING, base.RUNNING]
    assert seen[-1].ipv4 and seen[-1].ipv6


@pytest.mark.parametrize("raw,expected", [
    ({"status": "pending", "power_status": "running", "server_status": "none"}, base.STARTING),
    ({"status": "active", "power_status": "stopped", "server_status": "ok"}, base.STOPPED),
    ({"status": "suspended", "power_status": "stopped", "server_status": "ok"}, base.STOPPED),
    ({"status": "active", "power_status": "running", "server_status": "locked"}, base.STARTING),
    ({"status": "closed"}, base.UNKNOWN),
])
def test_status_normalisation(raw: dict, expected: str) -> None:
    assert normalised_status(raw) == expected


def test_cursor_pagination(vultr: Harness) -> None:
    vultr.server.seed_servers(5, labels={"env": "prod"})

    assert len(vultr.client.list_servers("env=prod")) == 5

    pages = vultr.server.matching("GET", r"/instances")
    cursors = [r.arg("cursor") for r in pages]
    assert cursors[0] is None and len(set(cursors)) == 3
    assert {r.arg("tag") for r in pages} == {"env:prod"}


def test_errors_carry_vultrs_message(vultr: Harness) -> None:
    vultr.server.fail_next(1, 400, body={"error": "Invalid plan.", "status": 400})
    with pytest.raises(ProviderError) as raised:
        vultr.client.create_server(ServerSpec(name="db-2"))
    assert raised.value.status == 400 and raised.value.code is None
    assert "Invalid plan." in str(raised.value)


def test_there_are_no_actions_to_poll(vultr: Harness) -> None:
    with pytest.raises(CloudConfigError):
        vultr.client.get_action("1")


def test_ssh_key_is_matched_by_content(vultr: Harness) -> None:
    first = vultr.client.upload_ssh_key("ops", PUBLIC_KEY)
    again = vultr.client.upload_ssh_key("ops-again", PUBLIC_KEY)

    assert first == again and vultr.server.count("POST", r"/ssh-keys") == 1


def test_from_plan_uses_the_documented_endpoint() -> None:
    client = VultrClient.from_plan({})

    assert client.session.base_url == "https://api.vultr.com/v2"
    assert client.session.token_env == "VULTR_API_KEY"
