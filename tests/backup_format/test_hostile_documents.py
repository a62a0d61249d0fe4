"""Manifests and keyrings built to exhaust a reader (deep nesting, sheer size) are refused
with the format's own error, naming the source, in milliseconds: never a RecursionError,
never a parse of gigabytes."""

from __future__ import annotations

import time

import pytest

from drfleet.backup_format.errors import KeyringInvalid, ManifestInvalid
from drfleet.backup_format.keyring import MAX_KEYRING_BYTES, load_keyring, parse_keyring
from drfleet.backup_format.manifest import MAX_MANIFEST_BYTES, Manifest

SOURCE = "store:datasets/orders/manifests/20240501T031500Z-9f2c01ab.json"


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize("document", [
    nested(100_000).encode(),
    nested(100_000, '{"a":', "}").replace("}", "1}", 1).encode(),
    b'{"format":"drfleet-manifest","version":1,"fingerprint":' + nested(5000).encode() + b"}",
    b"[" * 1_000_000,
], ids=["brackets", "objects", "deep-field", "unclosed"])
def test_a_deeply_nested_manifest_is_a_manifest_error(document):
    started = time.monotonic()
    with pytest.raises(ManifestInvalid) as info:
        Manifest.from_bytes(document, source=SOURCE)
    assert info.value.facts["source"] == SOURCE
    assert "nested more than" in info.value.reason or "do not balance" in info.value.reason
    assert time.monotonic() - started < 5, "a bomb must be refused before it is parsed"


def test_a_huge_manifest_is_refused_by_its_size():
    document = b'{"format":"drfleet-manifest","labels":{"x":"' + b"a" * MAX_MANIFEST_BYTES + b'"}}'
    with pytest.raises(ManifestInvalid) as info:
        Manifest.from_bytes(document, source=SOURCE)
    assert "more than the" in info.value.reason


def test_brackets_inside_strings_do_not_count_as_nesting(data_key):
    from tests.backup_format.conftest import manifest_fields
    odd = '[[[[{{{{\\"]]' * 100 + "\\"
    manifest = Manifest(**manifest_fields(labels={"odd": odd})).sign(data_key)
    assert Manifest.from_bytes(manifest.to_bytes(), source=SOURCE).labels["odd"] == odd


@pytest.mark.parametrize("text", [nested(100_000), '{"keys":' + nested(50) + "}", "x" * (MAX_KEYRING_BYTES + 1)],
                         ids=["brackets", "deep-keys", "huge"])
def test_a_hostile_keyring_is_keyring_invalid(text, tmp_path, monkeypatch):
    with pytest.raises(KeyringInvalid) as info:
        parse_keyring(text, source="pii.keyring")
    assert info.value.source == "pii.keyring"
    monkeypatch.setenv("HOSTILE_KEYRING", text)
    with pytest.raises(KeyringInvalid):
        load_keyring("pii", env="HOSTILE_KEYRING")
