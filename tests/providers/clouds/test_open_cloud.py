"""providers.clouds.open_cloud: the provider registry."""

from __future__ import annotations

import pytest

from drfleet.providers.clouds import CLOUDS, open_cloud
from drfleet.providers.clouds.base import CloudClient, CloudConfigError


@pytest.mark.parametrize("name", sorted(set(CLOUDS.kinds()) - {"local"}))  # local: no API, no token
def test_every_known_provider_builds_a_client(name: str) -> None:
    client = open_cloud(name, {"token_env": "SOME_TOKEN_VAR", "region": "r1"})

    assert isinstance(client, CloudClient) and client.provider == name
    assert client.session.token_env == "SOME_TOKEN_VAR"


def test_names_are_matched_case_insensitively() -> None:
    assert open_cloud(" Hetzner ", {}).provider == "hetzner"


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(CloudConfigError) as raised:
        open_cloud("aws", {})

    for name in CLOUDS.kinds():
        assert name in str(raised.value)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CloudConfigError):
        open_cloud("vultr", {"token": "literal-token-values-do-not-belong-in-plans"})
