import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drfleet.backup_format.datakey import DataKey, wrap_data_key
from drfleet.backup_format.errors import ManifestInvalid, ManifestTampered, UnknownManifestVersion
from drfleet.backup_format.manifest import MANIFEST_VERSION, Manifest
from tests.backup_format.conftest import BACKUP_ID, manifest_fields

SOURCE = "datasets/orders/manifests/20240501T031500Z-9f2c01ab.json"


@pytest.fixture
def signed(data_key):
    return Manifest(**manifest_fields()).sign(data_key)


def stored_document(manifest):
    return json.loads(manifest.to_bytes())


def from_document(document):
    return Manifest.from_bytes(json.dumps(document).encode(), source=SOURCE)


def test_manifest_round_trips_through_its_bytes(signed):
    assert Manifest.from_bytes(signed.to_bytes(), source=SOURCE) == signed


def test_stored_form_is_canonical_sorted_compact_json_with_a_newline(signed):
    data = signed.to_bytes()
    document = json.loads(data)
    assert data == json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    assert document["format"] == "drfleet-manifest" and document["version"] == MANIFEST_VERSION == 1


def test_timestamps_are_written_in_utc_with_z(signed):
    document = stored_document(signed)
    assert document["started_at"] == "2024-05-01T03:15:00Z"
    assert document["finished_at"] == "2024-05-01T03:17:00.000250Z"


def test_timestamps_in_other_zones_are_stored_as_utc(data_key):
    berlin = timezone(timedelta(hours=2))
    manifest = Manifest(**manifest_fields(started_at=datetime(2024, 5, 1, 5, 15, tzinfo=berlin)))
    assert stored_document(manifest.sign(data_key))["started_at"] == "2024-05-01T03:15:00Z"


def test_an_unsigned_manifest_cannot_be_stored():
    with pytest.raises(ManifestInvalid) as caught:
        Manifest(**manifest_fields()).to_bytes()
    assert "sign" in str(caught.value)


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_unknown_manifest_version_is_refused_with_what_is_supported(signed, version):
    document = {**stored_document(signed), "version": version}
    with pytest.raises(UnknownManifestVersion) as caught:
        from_document(document)
    assert caught.value.version == version and caught.value.supported == [1]
    assert caught.value.source == SOURCE


@pytest.mark.parametrize("data, reason", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"format": "drfleet-keyring", "version": 1}', "not a drfleet-manifest"),
    (b'{"format": "drfleet-manifest", "format": "drfleet-manifest", "version": 1}', "duplicate key"),
])
def test_unreadable_documents_are_invalid_and_name_their_source(data, reason):
    with pytest.raises(ManifestInvalid) as caught:
        Manifest.from_bytes(data, source=SOURCE)
    assert reason in str(caught.value) and SOURCE in str(caught.value)


@pytest.mark.parametrize("change, field", [
    ({"kind": "mysql"}, "kind"),
    ({"plaintext_size": "1000"}, "plaintext_size"),
    ({"plaintext_sha256": "XYZ"}, "plaintext_sha256"),
    ({"objects": []}, "objects"),
    ({"backup_id": "yesterday"}, "backup_id"),
    ({"dataset": "../etc"}, "dataset"),
    ({"parents": ["not-an-id"]}, "parents"),
    ({"unexpected": 1}, "unexpected"),
    ({"compression": {"algorithm": "gzip", "level": 6}}, "compression.algorithm"),
])
def test_invalid_fields_are_refused_by_name(signed, change, field):
    with pytest.raises(ManifestInvalid) as caught:
        from_document({**stored_document(signed), **change})
    assert field in caught.value.reason


def test_missing_field_is_refused_by_name(signed):
    document = stored_document(signed)
    del document["region"]
    with pytest.raises(ManifestInvalid) as caught:
        from_document(document)
    assert "region" in caught.value.reason


def test_a_non_canonical_timestamp_is_refused(signed):
    document = {**stored_document(signed), "created_at": "2024-05-01T03:18:00+00:00"}
    with pytest.raises(ManifestInvalid) as caught:
        from_document(document)
    assert "canonical" in caught.value.reason and "created_at" in caught.value.reason


def test_constructing_with_a_naive_timestamp_raises_a_drfleet_error():
    with pytest.raises(ManifestInvalid) as caught:
        Manifest(**manifest_fields(created_at=datetime(2024, 5, 1)))
    assert "created_at" in caught.value.reason and "timezone" in caught.value.reason


def test_the_same_object_twice_is_refused():
    entry = {"name": "data-0000.zst.dfe", "size": 44, "sha256": "00" * 32, "plaintext_size": 0}
    with pytest.raises(ManifestInvalid) as caught:
        Manifest(**manifest_fields(objects=[entry, entry]))
    assert "same object name" in caught.value.reason


def test_a_backup_cannot_be_its_own_parent():
    with pytest.raises(ManifestInvalid):
        Manifest(**manifest_fields(parents=[BACKUP_ID]))


@pytest.mark.parametrize("prefix", ["", "primary-s3:", "s3://bucket/fleet/", "/mnt/store/"])
def test_a_manifest_stored_under_another_backups_key_is_refused(signed, prefix):
    elsewhere = f"{prefix}datasets/orders/manifests/20240502T031500Z-00000000.json"
    with pytest.raises(ManifestInvalid) as caught:
        Manifest.from_bytes(signed.to_bytes(), source=elsewhere)
    assert "20240502T031500Z-00000000" in caught.value.reason and BACKUP_ID in caught.value.reason


def test_a_manifest_read_from_its_own_key_is_accepted(signed):
    Manifest.from_bytes(signed.to_bytes(), source=f"primary-s3:datasets/orders/manifests/{BACKUP_ID}.json")


def test_verified_manifest_passes(signed, data_key):
    Manifest.from_bytes(signed.to_bytes()).verify_mac(data_key)


@pytest.mark.parametrize("change", [
    {"plaintext_size": 999}, {"region": "us-east-1"}, {"labels": {"team": "other"}},
    {"objects": [{"name": "data-0000.zst.dfe", "size": 120, "sha256": "cd" * 32, "plaintext_size": 76}]},
    {"parents": ["20240430T031500Z-00000000"]},
])
def test_a_tampered_manifest_is_detected_once_the_key_is_known(signed, data_key, change):
    tampered = from_document({**stored_document(signed), **change})
    with pytest.raises(ManifestTampered) as caught:
        tampered.verify_mac(data_key)
    assert caught.value.backup_id == BACKUP_ID and BACKUP_ID in str(caught.value)


def test_a_manifest_without_mac_is_tampered(signed, data_key):
    stripped = from_document({**stored_document(signed), "mac": None})
    with pytest.raises(ManifestTampered) as caught:
        stripped.verify_mac(data_key)
    assert "no MAC" in str(caught.value)


def test_the_mac_does_not_verify_under_another_data_key(signed):
    with pytest.raises(ManifestTampered):
        signed.verify_mac(DataKey.generate())


def test_rewrapping_keys_keeps_the_mac_valid(signed, data_key, keyring):
    rewrapped = signed.replace(keys=[wrap_data_key(data_key, keyring.active)])
    assert rewrapped.mac == signed.mac
    Manifest.from_bytes(rewrapped.to_bytes()).verify_mac(data_key)


def test_changing_content_drops_the_mac_so_it_must_be_signed_again(signed, data_key):
    changed = signed.replace(labels={"team": "other"})
    assert changed.mac is None
    changed.sign(data_key).verify_mac(data_key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10)
ONE_KEY = DataKey.generate()


@settings(max_examples=60, deadline=None)
@given(position=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
       labels=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
       slot=st.none() | st.text(max_size=20))
def test_any_json_in_free_form_fields_round_trips_and_verifies(position, labels, slot):
    manifest = Manifest(**manifest_fields(source_position=position, fingerprint=position, labels=labels,
                                          slot=slot)).sign(ONE_KEY)
    parsed = Manifest.from_bytes(manifest.to_bytes())
    assert parsed == manifest
    parsed.verify_mac(ONE_KEY)
