"""open_store (providers/storage/__init__.py): building stores by kind."""

from __future__ import annotations

import pytest

from drfleet.providers.storage import STORES, InvalidStoreSettings, RetryingStore, open_store
from drfleet.providers.storage.filesystem import FilesystemStore
from drfleet.providers.storage.s3 import S3Store


def test_filesystem_kind_gives_a_retrying_filesystem_store(tmp_path):
    store = open_store("filesystem", {"root": tmp_path, "name": "local"})
    assert isinstance(store, RetryingStore) and isinstance(store.inner, FilesystemStore)
    assert store.name == "local"
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


def test_s3_kind_gives_a_retrying_s3_store(s3_server, s3_bucket):
    store = open_store("s3", {**s3_server.store_settings(s3_bucket), "prefix": "fleet"})
    assert isinstance(store.inner, S3Store)
    store.put_bytes("k", b"v")
    assert [info.key for info in store.list()] == ["k"]


def test_unknown_kind_lists_the_known_kinds():
    with pytest.raises(InvalidStoreSettings) as caught:
        open_store("tape", {"device": "/dev/st0"})
    assert caught.value.facts["known"] == ", ".join(STORES.kinds())
    assert "filesystem" in str(caught.value) and "s3" in str(caught.value)


def test_unexpected_setting_is_named_but_no_value_is_shown():
    with pytest.raises(InvalidStoreSettings) as caught:
        open_store("s3", {"bucket": "b", "secret_access_key": "hunter2-secret", "colour": "blue"})
    message = str(caught.value)
    assert "colour" in message
    assert "hunter2-secret" not in message and "blue" not in message


def test_impossible_setting_is_refused():
    with pytest.raises(InvalidStoreSettings, match="5 MiB"):
        open_store("s3", {"bucket": "b", "part_size": 1024})
