import base64
import json
import pickle

import pytest

from drfleet.backup_format.datakey import DataKey, unwrap_data_key, wrap_data_key
from drfleet.backup_format.errors import InvalidKeyMaterial, SecretNotSerializable, WrongKey
from drfleet.backup_format.keyring import create_keyring, load_keyring, rotate_keyring


def test_wrapped_key_is_json_safe_and_names_its_master_key(data_key, keyring):
    entry = wrap_data_key(data_key, keyring.active)
    assert json.loads(json.dumps(entry)) == entry
    assert entry["category"] == "pii" and entry["key_id"] == keyring.active.id
    assert entry["data_key_id"] == data_key.id
    assert data_key._material not in base64.b64decode(entry["wrapped"])


def test_unwrap_returns_the_same_data_key(data_key, keyring):
    unwrapped = unwrap_data_key([wrap_data_key(data_key, keyring.active)], keyring)
    assert unwrapped.id == data_key.id and unwrapped._material == data_key._material


def test_wrong_keyring_names_the_key_ids_the_backup_needs(data_key, keyring, tmp_path):
    entry = wrap_data_key(data_key, keyring.active)
    other_path = tmp_path / "other-pii.json"
    create_keyring(other_path, "pii")
    other = load_keyring("pii", file=other_path)
    with pytest.raises(WrongKey) as caught:
        unwrap_data_key([entry], other, backup_id="20240501T031500Z-9f2c01ab")
    error = caught.value
    assert error.needed == [keyring.active.id] and error.category == "pii"
    assert keyring.active.id in str(error) and other.active.id in str(error)
    assert "20240501T031500Z-9f2c01ab" in str(error)


def test_entries_of_another_category_are_not_used(data_key, keyring, tmp_path):
    create_keyring(tmp_path / "standard.json", "standard")
    standard = load_keyring("standard", file=tmp_path / "standard.json")
    entries = [wrap_data_key(data_key, standard.active), wrap_data_key(data_key, keyring.active)]
    assert unwrap_data_key(entries, keyring).id == data_key.id
    with pytest.raises(WrongKey):
        unwrap_data_key(entries[:1], keyring)


@pytest.mark.parametrize("field", ["wrapped", "nonce", "data_key_id"])
def test_a_tampered_entry_does_not_unwrap(data_key, keyring, field):
    entry = wrap_data_key(data_key, keyring.active)
    if field == "data_key_id":
        entry[field] = DataKey.generate().id
    else:
        raw = bytearray(base64.b64decode(entry[field]))
        raw[0] ^= 0x01
        entry[field] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(WrongKey) as caught:
        unwrap_data_key([entry], keyring)
    assert "authentication failed" in str(caught.value)


def test_an_entry_relabelled_to_another_key_of_the_keyring_does_not_unwrap(data_key, keyring_path):
    old_id = load_keyring("pii", file=keyring_path).active.id
    rotate_keyring(keyring_path)
    keyring = load_keyring("pii", file=keyring_path)
    entry = {**wrap_data_key(data_key, keyring.get(old_id)), "key_id": keyring.active.id}
    with pytest.raises(WrongKey):
        unwrap_data_key([entry], keyring)


def test_after_rotation_old_backups_still_open_and_new_ones_use_the_new_key(keyring_path):
    before = load_keyring("pii", file=keyring_path)
    old_backup_key = DataKey.generate()
    old_entries = [wrap_data_key(old_backup_key, before.active)]

    new_key_id = rotate_keyring(keyring_path)
    after = load_keyring("pii", file=keyring_path)
    assert unwrap_data_key(old_entries, after).id == old_backup_key.id

    new_backup_key = DataKey.generate()
    new_entry = wrap_data_key(new_backup_key, after.active)
    assert new_entry["key_id"] == new_key_id != before.active.id
    with pytest.raises(WrongKey):
        unwrap_data_key([new_entry], before)


def test_unwrap_failure_leaves_no_trace_on_disk(data_key, keyring, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(WrongKey):
        unwrap_data_key([{"category": "pii", "key_id": keyring.active.id}], keyring)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_data_key_shows_only_its_id_and_refuses_pickling(data_key):
    assert repr(data_key) == f"DataKey(id={data_key.id!r})" == str(data_key)
    assert data_key._material.hex() not in repr(data_key)
    with pytest.raises(SecretNotSerializable):
        pickle.dumps(data_key)


def test_data_keys_are_fresh_and_exactly_32_bytes():
    assert DataKey.generate().id != DataKey.generate().id
    with pytest.raises(InvalidKeyMaterial):
        DataKey(b"short")
