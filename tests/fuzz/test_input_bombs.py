"""Every reader of plans, keyrings, manifests, file indexes and API payloads, fed mutated
seeds and bombs (depth, aliases, size): a value or a DrfleetError within seconds, never a
RecursionError, a TypeError, a MemoryError or a hang.

``make test`` runs FUZZ_EXAMPLES (60) examples per property; ``make fuzz`` 3000.
"""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import example, given

from drfleet.backup_format.keyring import MAX_KEYRING_BYTES, parse_keyring
from drfleet.backup_format.manifest import MAX_MANIFEST_BYTES, Manifest
from drfleet.errors import DrfleetError
from drfleet.plan.loader import MAX_PLAN_BYTES, load_plan_text
from drfleet.providers import http
from drfleet.providers.datasources.support.files_index import MAX_HEADER_BYTES, FileIndex
from tests.fuzz.conftest import FUZZ, corpus
from tests.fuzz.mutations import bombs, mutated
from tests.fuzz.test_readers import no_hang

MANIFEST_SOURCE = "store:datasets/orders/manifests/20240501T031500Z-9f2c01ab.json"


def read_plan(data: bytes):
    plan = load_plan_text(data, source="fuzz.yaml")
    if plan.recovery:  # what `drfleet plan check` does next
        from drfleet.plan.recovery import recovery_config
        recovery_config(plan)
    return plan


READERS = {
    "plan": read_plan,
    "manifest": lambda data: Manifest.from_bytes(data, source=MANIFEST_SOURCE),
    "keyring": lambda data: parse_keyring(data, source="fuzz.keyring"),
    "index": lambda data: FileIndex.parse(io.BytesIO(data), source="fuzz:index"),
    "api": http._decode,
}


def reads_or_refuses(reader: str, data: bytes) -> None:
    with no_hang(20):
        try:
            READERS[reader](data)
        except DrfleetError as exc:
            assert str(exc).strip()


@FUZZ
@given(mutated(corpus("plan")) | bombs(corpus("plan"), yaml=True))
@example(b"regions: yes\n")
@example(b"\xff\xfe binary \x00 plan")
def test_plan_reader(data):
    reads_or_refuses("plan", data)


@FUZZ
@given(mutated(corpus("manifest")) | bombs(corpus("manifest")))
def test_manifest_reader(data):
    reads_or_refuses("manifest", data)


@FUZZ
@given(mutated(corpus("keyring")) | bombs(corpus("keyring")))
def test_keyring_reader(data):
    reads_or_refuses("keyring", data)


@FUZZ
@given(mutated(corpus("index")) | bombs(corpus("index")))
def test_file_index_reader(data):
    reads_or_refuses("index", data)


@FUZZ
@given(mutated(corpus("api")) | bombs(corpus("api")))
def test_api_payload_reader(data):
    reads_or_refuses("api", data)


@pytest.mark.parametrize("reader, limit", [("plan", MAX_PLAN_BYTES), ("manifest", MAX_MANIFEST_BYTES),
                                           ("keyring", MAX_KEYRING_BYTES), ("index", MAX_HEADER_BYTES),
                                           ("api", http.MAX_PAYLOAD_BYTES)])
def test_a_size_bomb_is_refused_by_its_size_not_parsed(reader, limit):
    data = b'{"pad": "' + b"a" * limit + b'"}\n'  # valid JSON (and YAML), one byte too many
    started = time.monotonic()
    with pytest.raises(DrfleetError) as caught:
        READERS[reader](data)
    assert "more than the" in str(caught.value) and "allowed" in str(caught.value)
    assert time.monotonic() - started < 5
