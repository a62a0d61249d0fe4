"""Linode-specific behaviour: instance shapes, events as actions, X-Filter, profile keys."""

from __future__ import annotations

import base64
import json
import re

import pytest

from drfleet.providers.clouds.base import ActionFailed, ProviderError, ServerSpec
from drfleet.providers.clouds.linode import LinodeClient, is_public_ipv4, linode_label
from tests.providers.clouds.harness import OTHER_KEY, PUBLIC_KEY, Harness


def test_create_sends_the_documented_body(linode: Harness) -> None:
    key_id = linode.client.upload_ssh_key("ops", PUBLIC_KEY)

    server, action = linode.client.create_server(ServerSpec(
        name="db-1", labels={"role": "db"}, ssh_key_ids=(key_id,), user_data="#cloud-config\n"))

    [request] = linode.server.matching("POST", r"/linode/instances")
    body = dict(request.body)
    root_pass = body.pop("root_pass")
    assert body == {"label": "db-1", "region": "us-east", "type": "g6-nanode-1",
                    "image": "linode/ubuntu24.04", "tags": ["role:db"],
                    "authorized_keys": [PUBLIC_KEY], "booted": True,
                    "metadata": {"user_data": base64.b64encode(b"#cloud-config\n").decode()}}
    assert len(root_pass) >= 32
    assert root_pass not in repr(server) + repr(action) + repr(linode.client)
    assert server.provider_status == "provisioning" and server.labels == {"role": "db"}


def test_create_action_is_the_linode_create_event(linode: Harness) -> None:
    server, action = linode.client.create_server(ServerSpec(name="web-1"))

    assert action is not None and action.command == "linode_create"
    assert action.resource_id == server.id
    [lookup] = linode.server.matching("GET", r"/account/events")
    assert json.loads(lookup.headers["x-filter"])["entity.id"] == int(server.id)

    done = linode.client.wait_for(action, deadline_seconds=60)

    assert done.status == "success"
    assert linode.server.count("GET", rf"/account/events/{action.id}") == 2


def test_failed_event_raises_action_failed_with_its_message(linode: Harness) -> None:
    linode.server.next_create_outcome("error", message="Host has insufficient resources")
    _, action = linode.client.create_server(ServerSpec(name="db-2"))

    with pytest.raises(ActionFailed) as raised:
        linode.client.wait_for(action, deadline_seconds=60)

    assert raised.value.code == "failed"
    assert "Host has insufficient resources" in str(raised.value)


def test_list_filters_tags_with_x_filter_and_pages(linode: Harness) -> None:
    linode.server.seed_servers(5, labels={"env": "prod"})
    linode.server.seed_servers(1, labels={"env": "dev"})

    assert len(linode.client.list_servers("env=prod")) == 5

    pages = linode.server.matching("GET", r"/linode/instances")
    assert [r.arg("page") for r in pages] == ["1", "2", "3"]
    assert {r.headers["x-filter"] for r in pages} == {json.dumps({"tags": "env:prod"})}


def test_errors_list_reason_and_field(linode: Harness) -> None:
    linode.client.create_server(ServerSpec(name="db-1"))

    with pytest.raises(ProviderError) as raised:
        linode.client.create_server(ServerSpec(name="db-1"))

    assert raised.value.status == 400 and raised.value.code is None
    assert "Label must be unique among your linodes (field label)" in str(raised.value)


def test_public_address_is_preferred_over_private(linode: Harness) -> None:
    [linode_id] = linode.server.seed_servers(1)

    server = linode.client.get_server(linode_id)

    assert server.ipv4.startswith("192.0.2.")
    assert is_public_ipv4("192.0.2.1") and not is_public_ipv4("192.168.133.4")


def test_ssh_key_is_matched_by_content_across_pages(linode: Harness) -> None:
    for n in range(4):
        linode.server.ssh_keys[str(n)] = {"id": n, "label": f"k{n}", "ssh_key": OTHER_KEY + str(n),
                                          "created": "2024-01-01T00:00:00"}
    first = linode.client.upload_ssh_key("ops", PUBLIC_KEY)
    again = linode.client.upload_ssh_key("ops", PUBLIC_KEY.rsplit(" ", 1)[0] + " renamed")

    assert first == again
    assert linode.server.count("POST", r"/profile/sshkeys") == 1
    # 4 keys on 2 pages searched; then 5 keys on 3 pages searched.
    assert linode.server.count("GET", r"/profile/sshkeys") == 2 + 3


def test_from_plan_uses_the_documented_endpoint() -> None:
    client = LinodeClient.from_plan({"base_url": "https://api.linode.com/v4beta"})

    assert client.session.base_url == "https://api.linode.com/v4beta"
    assert client.session.token_env == "LINODE_TOKEN"


def test_an_unreadable_event_does_not_lose_the_created_linode(linode: Harness) -> None:
    linode.server.fail_next(4, 503, path="/account/events")

    server, action = linode.client.create_server(ServerSpec(name="db-9"))

    assert action is None and server.id in linode.server.servers
    assert linode.client.wait_until_running(server.id, 60).is_running


LABEL_RULE = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9]))*[A-Za-z0-9]")


@pytest.mark.parametrize("name,label", [
    ("db-1", "db-1"),
    ("site eu/central", "site-eu-central"),
    ("web--1", "web-1"),
    ("a__b..c-._d", "a_b.c-d"),
    ("-db-", "vm-db"),
    ("1st-db", "vm-1st-db"),
    ("db", "vm-db"),
    ("###", "vm-server"),
    ("x" * 70 + "-y", "x" * 64),
    ("a" * 63 + "-b", "a" * 63),
])
def test_a_server_name_becomes_a_label_the_api_takes(name: str, label: str) -> None:
    assert linode_label(name) == label
    assert 3 <= len(label) <= 64 and LABEL_RULE.fullmatch(label)


def test_create_sends_a_valid_label_for_an_awkward_name(linode: Harness) -> None:
    server, _ = linode.client.create_server(ServerSpec(name="1 site__restore-"))

    [request] = linode.server.matching("POST", r"/linode/instances")
    assert request.body["label"] == "vm-1-site_restore" == server.name
