"""drfleet's clients beside each provider's official Python SDK, on the same contract server.

One lifecycle each (create, wait, list across pages, delete), by the SDK and by drfleet, on
two fresh contract servers seeded alike: both must finish with no request the provider's
document forbids, use the same endpoints for create, list and delete with the same paging
parameters, send the same values for what they both send, and list the same servers.
SDKs: hcloud (Hetzner), pydo (DigitalOcean), linode_api4 (Linode). Vultr publishes no
Python SDK on PyPI, so it has no comparison here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from drfleet.providers.clouds import open_cloud
from drfleet.providers.clouds.base import ServerSpec
from tests.contract_servers.base import ContractServer
from tests.contract_servers.digitalocean import DigitalOceanContract
from tests.contract_servers.hetzner import HetznerContract
from tests.contract_servers.linode import LinodeContract
from tests.fixtures.util import wait_for
from tests.providers.clouds.harness import CASES, PUBLIC_KEY, FakeClock

TOKEN = "sdk-comparison-token"
ROOT_PASS = "Aa1-" + "sdk-comparison" * 2


@dataclass
class Trace:
    """What one lifecycle did: its requests (method, path with ids as {id}, query names),
    the create body, and the names it listed."""

    calls: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    create_body: dict[str, Any] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)

    def endpoints(self, method: str) -> set[tuple[str, str, tuple[str, ...]]]:
        return {c for c in self.calls if c[0] == method}


def trace_of(server: ContractServer, create_path: str, listed: list[str]) -> Trace:
    server.assert_no_violations()
    calls = [(r.method, re.sub(r"/[0-9a-f-]*\d[0-9a-f-]*(?=/|$)", "/{id}", r.path), tuple(sorted(r.query)))
             for r in server.requests]
    [create] = [r for r in server.requests if r.method == "POST" and r.path == create_path]
    return Trace(calls, dict(create.body), sorted(listed))


@dataclass(frozen=True)
class Comparison:
    contract: Callable[[], ContractServer]
    seed: int
    create_path: str
    list_path: str
    sdk: Callable[[ContractServer], list[str]]
    same_values: tuple[tuple[str, str], ...]   # (SDK body key, drfleet body key)


# ---------------------------------------------------------------------------- the SDKs


def hcloud_lifecycle(server: ContractServer) -> list[str]:
    from hcloud import Client
    from hcloud.images import Image
    from hcloud.locations import Location
    from hcloud.server_types import ServerType

    client = Client(token=TOKEN, api_endpoint=server.url, poll_interval=0.01)
    created = client.servers.create("db-1", server_type=ServerType(name="cx22"),
                                    image=Image(name="ubuntu-24.04"), location=Location(name="fsn1"),
                                    labels={"role": "db"})
    created.action.wait_until_finished()
    listed = [s.name for s in client.servers.get_all()]
    client.servers.delete(created.server).wait_until_finished()
    return listed


def pydo_lifecycle(server: ContractServer) -> list[str]:
    from pydo import Client

    plain_http = {"enforce_https": False}  # azure-core refuses a bearer token over http
    client = Client(token=TOKEN, endpoint=f"http://127.0.0.1:{server.port}")
    created = client.droplets.create(body={"name": "db-1", "region": "nyc3", "size": "s-1vcpu-1gb",
                                           "image": "ubuntu-24-04-x64", "tags": ["role:db"]},
                                     **plain_http)
    action_id = created["links"]["actions"][0]["id"]
    wait_for(lambda: client.actions.get(action_id, **plain_http)["action"]["status"] == "completed",
             timeout=30, what="the droplet's create action")
    listed, page = [], 1
    while True:
        answer = client.droplets.list(per_page=200, page=page, **plain_http)
        listed += [d["name"] for d in answer["droplets"]]
        if not answer.get("links", {}).get("pages", {}).get("next"):
            break
        page += 1
    client.droplets.destroy(created["droplet"]["id"], **plain_http)
    return listed


def linode_api4_lifecycle(server: ContractServer) -> list[str]:
    from linode_api4 import LinodeClient

    client = LinodeClient(TOKEN, base_url=server.url)
    created = client.linode.instance_create("g6-nanode-1", "us-east", image="linode/ubuntu24.04",
                                            label="db-1", tags=["role:db"],
                                            authorized_keys=[PUBLIC_KEY], root_pass=ROOT_PASS)

    def running() -> bool:
        created.invalidate()
        return created.status == "running"

    wait_for(running, timeout=30, what="the Linode to be running")
    listed = [linode.label for linode in client.linode.instances()]
    created.delete()
    return listed


COMPARISONS = {
    "hetzner": Comparison(lambda: HetznerContract(TOKEN), 3, "/servers", "/servers",
                          hcloud_lifecycle, (("name", "name"), ("server_type", "server_type"),
                                             ("image", "image"), ("location", "location"),
                                             ("labels", "labels"))),
    "digitalocean": Comparison(lambda: DigitalOceanContract(TOKEN), 3, "/droplets", "/droplets",
                               pydo_lifecycle, (("name", "name"), ("region", "region"),
                                                ("size", "size"), ("image", "image"),
                                                ("tags", "tags"))),
    # The document's smallest Linode page is 25 (the SDK asks for the page size it was given).
    "linode": Comparison(lambda: LinodeContract(TOKEN, page_size_cap=25), 30, "/linode/instances",
                         "/linode/instances", linode_api4_lifecycle,
                         (("label", "label"), ("region", "region"), ("type", "type"),
                          ("image", "image"), ("tags", "tags"), ("authorized_keys", "authorized_keys"))),
}


def drfleet_lifecycle(provider: str, server: ContractServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    case = CASES[provider]
    monkeypatch.setenv(case.token_env, TOKEN)
    clock = FakeClock()
    client = open_cloud(provider, {"token_env": case.token_env, "base_url": server.url, **case.defaults},
                        sleep=clock.sleep, clock=clock.monotonic, now=clock.now, jitter=None)
    key_id = client.upload_ssh_key("ops", PUBLIC_KEY) if provider == "linode" else None
    created, action = client.create_server(ServerSpec(name="db-1", labels={"role": "db"},
                                                      ssh_key_ids=(key_id,) if key_id else ()))
    client.wait_for(action or created, deadline_seconds=600)
    listed = [s.name for s in client.list_servers()]
    done = client.delete_server(created.id)
    if done is not None:
        client.wait_for(done, deadline_seconds=600)
    return listed


@pytest.fixture(scope="module", params=sorted(COMPARISONS))
def traces(request: pytest.FixtureRequest) -> tuple[Comparison, Trace, Trace]:
    """Both lifecycles of one provider, run once for the tests below."""
    comparison = COMPARISONS[request.param]
    results = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        for run in (comparison.sdk, lambda s: drfleet_lifecycle(request.param, s, monkeypatch)):
            with comparison.contract() as server:
                server.seed_servers(comparison.seed)
                listed = run(server)
                results.append(trace_of(server, comparison.create_path, listed))
    return comparison, results[0], results[1]


def test_both_list_the_same_servers_across_pages(traces: tuple[Comparison, Trace, Trace]) -> None:
    comparison, sdk, ours = traces

    assert sdk.listed == ours.listed and len(ours.listed) == comparison.seed + 1
    list_calls = [c for c in ours.calls if c[:2] == ("GET", comparison.list_path)]
    assert len(list_calls) >= 2, "the lifecycle must cross at least two pages"


def test_both_use_the_same_endpoints_to_create_list_and_delete(
        traces: tuple[Comparison, Trace, Trace]) -> None:
    comparison, sdk, ours = traces

    for method, path in (("POST", comparison.create_path), ("DELETE", comparison.list_path + "/{id}")):
        assert {c[:2] for c in sdk.endpoints(method)} >= {(method, path)}
        assert {c[:2] for c in ours.endpoints(method)} >= {(method, path)}
    paging = {name for c in sdk.calls if c[:2] == ("GET", comparison.list_path) for name in c[2]}
    ours_paging = {name for c in ours.calls if c[:2] == ("GET", comparison.list_path) for name in c[2]}
    assert paging <= ours_paging, f"drfleet pages with {ours_paging}, the SDK with {paging}"


def test_both_send_the_same_values_for_the_same_server(traces: tuple[Comparison, Trace, Trace]) -> None:
    comparison, sdk, ours = traces

    differ = {(a, b): (sdk.create_body.get(a), ours.create_body.get(b))
              for a, b in comparison.same_values if sdk.create_body.get(a) != ours.create_body.get(b)}

    assert differ == {}
    assert all(a in sdk.create_body and b in ours.create_body for a, b in comparison.same_values)
