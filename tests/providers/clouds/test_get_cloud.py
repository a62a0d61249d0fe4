"""providers.clouds.get_cloud: choosing a provider module by name."""

from __future__ import annotations

import pytest

from providers.clouds import PROVIDERS, get_cloud
from providers.clouds.base import CloudClient, CloudConfigError


@pytest.mark.parametrize("name", sorted(set(PROVIDERS) - {"local"}))  # local: no API, no token
def test_every_known_provider_builds_a_client(name: str) -> None:
    client = get_cloud(name, {"token_env": "SOME_TOKEN_VAR", "region": "r1"})

    assert isinstance(client, CloudClient) and client.provider == name
    assert client.session.token_env == "SOME_TOKEN_VAR"


def test_names_are_matched_case_insensitively() -> None:
    assert get_cloud(" Hetzner ", {}).provider == "hetzner"


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(CloudConfigError) as raised:
        get_cloud("aws", {})

    for name in PROVIDERS:
        assert name in str(raised.value)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CloudConfigError):
        get_cloud("vultr", {"token": "literal-token-values-do-not-belong-in-plans"})
