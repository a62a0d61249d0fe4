"""Records, errors and helpers shared by every provider client."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from drfleet.errors import DrfleetError
from drfleet.providers.clouds.base import (
    ActionFailed,
    ActionTimedOut,
    CloudConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    labels_match,
    labels_to_tags,
    parse_label_selector,
    same_ssh_key,
    ssh_md5_fingerprint,
    tags_to_labels,
)
from tests.providers.clouds.harness import OTHER_KEY, PUBLIC_KEY


def test_label_selector_terms() -> None:
    assert parse_label_selector("env=prod, role ,tier = db") == {
        "env": "prod", "role": None, "tier": "db"}
    assert parse_label_selector(None) == {} and parse_label_selector("") == {}


@pytest.mark.parametrize("selector", ["env!=prod", "=prod", "env=", "!env"])
def test_unsupported_selector_terms_are_refused(selector: str) -> None:
    with pytest.raises(CloudConfigError):
        parse_label_selector(selector)


def test_labels_match_values_and_presence() -> None:
    labels = {"env": "prod", "role": "db"}
    assert labels_match(labels, {"env": "prod", "role": None})
    assert not labels_match(labels, {"env": "dev"})
    assert not labels_match(labels, {"tier": None})


def test_labels_round_trip_through_tags() -> None:
    labels = {"env": "prod", "backup": ""}
    assert labels_to_tags(labels) == ["backup", "env:prod"]
    assert tags_to_labels(labels_to_tags(labels)) == labels


def test_md5_fingerprint_matches_ssh_keygen(tmp_path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    path = tmp_path / "key.pub"
    path.write_text(PUBLIC_KEY + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout

    assert f"MD5:{ssh_md5_fingerprint(PUBLIC_KEY)} " in out


def test_same_ssh_key_ignores_comments_and_whitespace() -> None:
    assert same_ssh_key(PUBLIC_KEY, "  " + PUBLIC_KEY.rsplit(" ", 1)[0] + " laptop\n")
    assert not same_ssh_key(PUBLIC_KEY, OTHER_KEY)
    assert not same_ssh_key(PUBLIC_KEY, "not a key")


@pytest.mark.parametrize("line", ["", "ssh-ed25519", "ssh-ed25519 !!!notbase64!!!"])
def test_malformed_public_keys_are_refused(line: str) -> None:
    with pytest.raises(CloudConfigError) as raised:
        ssh_md5_fingerprint(line)
    assert ".pub" in str(raised.value)


@pytest.mark.parametrize("error_class", [
    ProviderError, ProviderNotFound, ProviderUnavailable, ActionFailed, CloudConfigError])
def test_every_error_is_a_drfleet_error(error_class: type) -> None:
    assert issubclass(error_class, DrfleetError)


def test_provider_error_renders_the_operator_facts() -> None:
    error = ProviderError("hetzner API error: boom", provider="hetzner", status=409,
                          code="uniqueness_error", request_id="corr-1", action_id="77")

    text = str(error)
    for fact in ("provider: hetzner", "http_status: 409", "provider_code: uniqueness_error",
                 "request_id: corr-1", "action_id: 77", "what to do:"):
        assert fact in text


def test_auth_error_hint_names_the_variable() -> None:
    error = ProviderAuthError("rejected", provider="vultr", status=401, token_env="VULTR_API_KEY")

    assert "VULTR_API_KEY" in error.hint and error.token_env == "VULTR_API_KEY"


def test_timing_and_rate_limit_errors_carry_their_numbers() -> None:
    timed_out = ActionTimedOut("late", provider="linode", action_id="5", waited_seconds=12.3456)
    limited = ProviderRateLimited("slow down", provider="linode", status=429, retry_after=30.0)

    assert timed_out.waited_seconds == 12.3456 and "waited_seconds: 12.346" in str(timed_out)
    assert limited.retry_after == 30.0 and "retry_after_seconds: 30.0" in str(limited)
