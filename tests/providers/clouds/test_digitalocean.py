"""DigitalOcean-specific behaviour: droplet shapes, links pagination, actions, tags, keys."""

from __future__ import annotations

import pytest

from drfleet.providers.clouds.base import ActionFailed, ProviderError, ProviderNotFound, ServerSpec
from drfleet.providers.clouds.digitalocean import DigitalOceanClient
from tests.contract_servers.digitalocean import md5_fingerprint
from tests.providers.clouds.harness import PUBLIC_KEY, Harness


def test_create_sends_the_documented_body(digitalocean: Harness) -> None:
    key_id = digitalocean.client.upload_ssh_key("ops", PUBLIC_KEY)

    server, action = digitalocean.client.create_server(ServerSpec(
        name="db-1", labels={"role": "db", "env": "prod"}, ssh_key_ids=(key_id,),
        user_data="#cloud-config\n"))

    [request] = digitalocean.server.matching("POST", r"/droplets")
    assert request.body == {"name": "db-1", "region": "nyc3", "size": "s-1vcpu-1gb",
                            "image": "ubuntu-24-04-x64", "ssh_keys": [int(key_id)],
                            "tags": ["env:prod", "role:db"], "ipv6": True,
                            "user_data": "#cloud-config\n"}
    assert server.provider_status == "new" and server.ipv4 is None
    assert server.labels == {"role": "db", "env": "prod"}
    assert action is not None and action.command == "create"
    assert action.resource_id == server.id


def test_create_action_is_polled_at_v2_actions(digitalocean: Harness) -> None:
    server, action = digitalocean.client.create_server(ServerSpec(name="web-1"))

    done = digitalocean.client.wait_for(action, deadline_seconds=60)

    assert done.resource_id == server.id
    assert digitalocean.server.count("GET", rf"/actions/{action.id}") == 2
    running = digitalocean.client.get_server(server.id)
    assert running.provider_status == "active" and running.ipv4.startswith("198.51.100.")
    assert running.ipv6.startswith("2604:a880:")


def test_errored_action_raises_action_failed(digitalocean: Harness) -> None:
    digitalocean.server.next_create_outcome("error")
    _, action = digitalocean.client.create_server(ServerSpec(name="db-2"))

    with pytest.raises(ActionFailed) as raised:
        digitalocean.client.wait_for(action, deadline_seconds=60)

    assert raised.value.code == "errored" and raised.value.action_id == action.id


def test_pagination_follows_absolute_next_links(digitalocean: Harness) -> None:
    digitalocean.server.seed_servers(3, labels={"env": "prod"})
    digitalocean.server.seed_servers(2, labels={"env": "dev"})

    found = digitalocean.client.list_servers("env=prod")

    assert len(found) == 3
    pages = digitalocean.server.matching("GET", r"/droplets")
    assert [r.arg("page") for r in pages] == ["1", "2"]
    assert {r.arg("tag_name") for r in pages} == {"env:prod"}


def test_next_links_are_followed_as_given(digitalocean: Harness) -> None:
    digitalocean.server.seed_servers(5)

    assert len(digitalocean.client.list_servers()) == 5

    first, *rest = digitalocean.server.matching("GET", r"/droplets")
    assert first.query == {"page": ["1"], "per_page": ["200"]}
    # later pages ask for exactly what links.pages.next says (the server's page size)
    assert [r.query for r in rest] == [{"page": ["2"], "per_page": ["2"]},
                                       {"page": ["3"], "per_page": ["2"]}]


@pytest.mark.parametrize("origin", ["https://127.0.0.1:{port}", "http://localhost:{port}",
                                    "http://127.0.0.1:{other}"])
def test_a_next_link_to_another_scheme_or_host_is_refused(digitalocean: Harness,
                                                          origin: str) -> None:
    digitalocean.server.seed_servers(3)
    link = origin.format(port=digitalocean.server.port, other=digitalocean.server.port + 1)
    digitalocean.server.link_base = link + "/v2"

    with pytest.raises(ProviderError) as raised:
        digitalocean.client.list_servers()

    assert raised.value.facts["link_origin"] == link
    assert raised.value.facts["expected_origin"] == f"http://127.0.0.1:{digitalocean.server.port}"
    assert digitalocean.server.count("GET", r"/droplets") == 1  # nothing sent to the link


def test_error_carries_id_and_request_id(digitalocean: Harness) -> None:
    with pytest.raises(ProviderNotFound) as raised:
        digitalocean.client.get_server("424242")

    [request] = digitalocean.server.matching("GET", r"/droplets/424242")
    assert raised.value.code == "not_found"
    assert raised.value.request_id == request.request_id


def test_validation_error_is_reported_not_retried(digitalocean: Harness) -> None:
    digitalocean.server.fail_next(1, 422, body={"id": "unprocessable_entity",
                                                "message": "Region is not available"})

    with pytest.raises(ProviderError) as raised:
        digitalocean.client.create_server(ServerSpec(name="db-3"))

    assert raised.value.status == 422 and raised.value.code == "unprocessable_entity"
    assert "Region is not available" in str(raised.value)
    assert digitalocean.server.count("POST", r"/droplets") == 1


def test_delete_answers_204_without_action(digitalocean: Harness) -> None:
    [droplet_id] = digitalocean.server.seed_servers(1)

    assert digitalocean.client.delete_server(droplet_id) is None
    assert droplet_id not in digitalocean.server.servers


def test_ssh_key_is_looked_up_by_fingerprint(digitalocean: Harness) -> None:
    first = digitalocean.client.upload_ssh_key("ops", PUBLIC_KEY)
    second = digitalocean.client.upload_ssh_key("ops", PUBLIC_KEY)

    assert first == second
    assert digitalocean.server.count("POST", r"/account/keys") == 1
    assert digitalocean.server.count("GET", r"/account/keys/([0-9a-f]{2}:){15}[0-9a-f]{2}") == 2


def test_from_plan_uses_the_documented_endpoint() -> None:
    client = DigitalOceanClient.from_plan({})

    assert client.session.base_url == "https://api.digitalocean.com/v2"
    assert client.session.token_env == "DIGITALOCEAN_TOKEN"


def test_concurrent_upload_of_the_same_key_resolves_to_its_id(digitalocean: Harness) -> None:
    def racing_worker_uploads() -> None:
        digitalocean.server.ssh_keys["77"] = {"id": 77, "name": "ops", "public_key": PUBLIC_KEY,
                                              "fingerprint": md5_fingerprint(PUBLIC_KEY)}

    digitalocean.server.fail_next(1, 422, method="POST", path="/account/keys",
                                  effect=racing_worker_uploads,
                                  body={"id": "unprocessable_entity",
                                        "message": "SSH Key is already in use on your account"})

    assert digitalocean.client.upload_ssh_key("ops", PUBLIC_KEY) == "77"


def test_a_different_validation_error_on_upload_is_raised(digitalocean: Harness) -> None:
    digitalocean.server.fail_next(1, 422, method="POST", path="/account/keys",
                                  body={"id": "unprocessable_entity", "message": "Name invalid"})

    with pytest.raises(ProviderError) as raised:
        digitalocean.client.upload_ssh_key("bad name", PUBLIC_KEY)

    assert raised.value.code == "unprocessable_entity" and "Name invalid" in str(raised.value)
