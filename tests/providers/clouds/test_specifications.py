"""The contract servers hold clients to the providers' published OpenAPI documents.

Each contract server checks every request against its provider's document
(tests/contract_servers/spec.py) and a test that leaves a violation behind fails at teardown.
Here: a request the document forbids is refused and fails the test; the servers' own answers
(completed from the document) pass it; and the documented upstream flaws that are corrected
stay corrected only as long as they are still flaws.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from drfleet.providers.clouds.base import ProviderError
from drfleet.providers.dns.cloudflare import CloudflareClient
from tests.contract_servers.cloudflare import CloudflareContract
from tests.contract_servers.spec import FILES, PATCHES, dereference, provider_spec, spec_dirs
from tests.providers.clouds.harness import Harness


def spec_or_skip(provider: str) -> Any:
    spec = provider_spec(provider)
    if spec is None:
        pytest.skip(f"the {provider} OpenAPI document is not installed: put {provider}/"
                    f"{FILES[provider]} under one of {[str(d) for d in spec_dirs()]} "
                    f"(tests/specs/{provider}/SOURCE.md says where it comes from)")
    return spec


# One request per provider that its document does not allow, and what the refusal names.
WRONG = {
    "hetzner": ("POST", "/servers", {"name": "db-1", "image": "ubuntu-24.04"}, "server_type"),
    "digitalocean": ("POST", "/droplets", {"name": "db-1", "region": "nyc3", "size": "s-1vcpu-1gb",
                                           "image": "ubuntu-24-04-x64", "ipv6": "yes"}, "ipv6"),
    "linode": ("POST", "/linode/instances", {"label": "db--1", "region": "us-east",
                                             "type": "g6-nanode-1"}, "label"),
    "vultr": ("POST", "/instances", {"region": "ewr", "plan": "vc2-1c-1gb", "os_id": "ubuntu"},
              "os_id"),
}


def test_a_request_the_document_forbids_is_refused_and_fails_the_test(cloud: Harness) -> None:
    spec_or_skip(cloud.case.name)
    method, path, body, field = WRONG[cloud.case.name]

    with pytest.raises(ProviderError) as raised:
        cloud.client.session.request(method, path, json=body)

    assert raised.value.status == 400 and "specification" in str(raised.value)
    assert any(field in v for v in cloud.server.violations)
    with pytest.raises(AssertionError, match=f"{cloud.case.name} specification does not allow"):
        cloud.server.assert_no_violations()  # what the fixture's teardown does
    cloud.server.violations.clear()
    assert [r for r in cloud.server.requests if r.method == method and r.path == path]
    assert cloud.server.servers == {}  # refused before the server acted on it


def test_an_undocumented_query_parameter_is_refused(cloud: Harness) -> None:
    spec_or_skip(cloud.case.name)
    path = {"hetzner": "/servers", "digitalocean": "/droplets", "linode": "/linode/instances",
            "vultr": "/instances"}[cloud.case.name]

    with pytest.raises(ProviderError):
        cloud.client.session.get(path, params={"colour": "blue"})

    assert any("undocumented query parameter 'colour'" in v for v in cloud.server.violations)
    cloud.server.violations.clear()


def test_an_undocumented_path_is_refused(cloud: Harness) -> None:
    spec_or_skip(cloud.case.name)

    with pytest.raises(ProviderError):
        cloud.client.session.get("/servers-and-more")

    assert any("no such path" in v for v in cloud.server.violations)
    cloud.server.violations.clear()


def test_a_cloudflare_record_of_an_unknown_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec_or_skip("cloudflare")
    monkeypatch.setenv("CF_TOKEN", "cf-token")
    with CloudflareContract("cf-token") as api:
        zone_id = api.add_zone("example.com")
        client = CloudflareClient("example.com", token_env="CF_TOKEN", base_url=api.url, jitter=None)

        with pytest.raises(ProviderError) as raised:
            client.session.post(f"/zones/{zone_id}/dns_records",
                                json={"type": "BOGUS", "name": "www.example.com", "content": "x"})

        assert raised.value.status == 400 and api.records == {}
        assert any("request body" in v for v in api.violations)


@pytest.mark.parametrize("provider", sorted(FILES))
def test_every_patched_flaw_is_still_in_the_document(provider: str) -> None:
    """A correction must go once the provider fixes its document: each patch must change it."""
    spec = spec_or_skip(provider)

    for patch in PATCHES.get(provider, ()):
        doc = dereference(spec.path)
        before = repr(doc["paths"])
        patch.apply(doc)
        assert repr(doc["paths"]) != before, f"no longer needed: {patch.why}"


@pytest.mark.parametrize("provider", sorted(FILES))
def test_the_document_has_every_operation_drfleet_uses(provider: str) -> None:
    spec = spec_or_skip(provider)
    used = {
        "hetzner": [("GET", "/v1/servers"), ("POST", "/v1/servers"), ("GET", "/v1/servers/1"),
                    ("DELETE", "/v1/servers/1"), ("GET", "/v1/actions/1"), ("GET", "/v1/ssh_keys"),
                    ("POST", "/v1/ssh_keys")],
        "digitalocean": [("GET", "/v2/droplets"), ("POST", "/v2/droplets"),
                         ("GET", "/v2/droplets/1"), ("DELETE", "/v2/droplets/1"),
                         ("GET", "/v2/actions/1"), ("POST", "/v2/account/keys"),
                         ("GET", "/v2/account/keys/aa:bb")],
        "linode": [("GET", "/v4/linode/instances"), ("POST", "/v4/linode/instances"),
                   ("GET", "/v4/linode/instances/1"), ("DELETE", "/v4/linode/instances/1"),
                   ("GET", "/v4/account/events"), ("GET", "/v4/account/events/1"),
                   ("GET", "/v4/profile/sshkeys"), ("POST", "/v4/profile/sshkeys"),
                   ("GET", "/v4/profile/sshkeys/1")],
        "vultr": [("GET", "/v2/instances"), ("POST", "/v2/instances"), ("GET", "/v2/instances/a-b"),
                  ("DELETE", "/v2/instances/a-b"), ("GET", "/v2/ssh-keys"), ("POST", "/v2/ssh-keys")],
        "cloudflare": [("GET", "/client/v4/zones"), ("GET", "/client/v4/zones/ab/dns_records"),
                       ("POST", "/client/v4/zones/ab/dns_records"),
                       ("PUT", "/client/v4/zones/ab/dns_records/cd"),
                       ("DELETE", "/client/v4/zones/ab/dns_records/cd")],
    }[provider]

    missing = [(m, p) for m, p in used if isinstance(spec.operation(m, p), str)]

    assert missing == []


SUMS = Path(__file__).resolve().parents[2] / "specs" / "SHA256SUMS"


@pytest.mark.parametrize("provider", sorted(FILES))
def test_installed_documents_match_their_checksums(provider: str) -> None:
    spec = spec_or_skip(provider)
    folder = spec.path.parent
    expected = {line.split(None, 1)[1].strip(): line.split(None, 1)[0]
                for line in SUMS.read_text().splitlines() if line.split(None, 1)[1].startswith(provider + "/")}

    found = {name: hashlib.sha256((folder.parent / name).read_bytes()).hexdigest()
             for name in expected if (folder.parent / name).is_file()}

    assert found == expected
