import base64
import json
import os
import pickle
import re
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from drfleet.backup_format.errors import (
    KeyFilePermissionError,
    KeyNotInKeyring,
    KeyringError,
    KeyringExists,
    KeyringInvalid,
    KeyringNotFound,
    SecretNotSerializable,
)
from drfleet.backup_format.keyring import create_keyring, load_keyring, rotate_keyring

KEY_ID = re.compile(r"pii-\d{8}-[0-9a-f]{8}\Z")


def materials(path):
    return [key["material"] for key in json.loads(path.read_text())["keys"]]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_keyring_is_private_and_holds_one_active_key(tmp_path):
    path = tmp_path / "pii.json"
    key_id = create_keyring(path, "pii")
    assert KEY_ID.match(key_id)
    assert mode_of(path) == 0o600
    keyring = load_keyring("pii", file=path)
    assert keyring.category == "pii"
    assert keyring.active.id == key_id and keyring.key_ids == [key_id]
    assert len(keyring.active.material) == 32


def test_create_refuses_to_overwrite_an_existing_keyring(keyring_path):
    before = keyring_path.read_bytes()
    with pytest.raises(KeyringExists) as caught:
        create_keyring(keyring_path, "pii")
    assert str(keyring_path) in str(caught.value)
    assert keyring_path.read_bytes() == before
    assert sorted(p.name for p in keyring_path.parent.iterdir()) == [keyring_path.name]


def test_rotation_adds_an_active_key_and_keeps_the_old_ones(keyring_path):
    old = load_keyring("pii", file=keyring_path).active.id
    new = rotate_keyring(keyring_path)
    keyring = load_keyring("pii", file=keyring_path)
    assert new != old and KEY_ID.match(new)
    assert keyring.active.id == new
    assert keyring.key_ids == [old, new]
    assert mode_of(keyring_path) == 0o600
    leftovers = {p.name for p in keyring_path.parent.iterdir()} - {keyring_path.name, f"{keyring_path.name}.lock"}
    assert leftovers == set()


def test_concurrent_rotations_lose_no_key(keyring_path):
    with ThreadPoolExecutor(max_workers=4) as pool:
        new_ids = list(pool.map(lambda _: rotate_keyring(keyring_path), range(4)))
    assert set(new_ids) <= set(load_keyring("pii", file=keyring_path).key_ids)
    assert len(load_keyring("pii", file=keyring_path)) == 5


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_keyring_file_open_to_group_or_others_is_refused_with_chmod_hint(keyring_path, mode):
    os.chmod(keyring_path, mode)
    with pytest.raises(KeyFilePermissionError) as caught:
        load_keyring("pii", file=keyring_path)
    assert caught.value.hint == f"chmod 600 {keyring_path}"
    assert str(keyring_path) in str(caught.value)


def test_read_only_owner_file_is_accepted(keyring_path):
    os.chmod(keyring_path, 0o400)
    assert load_keyring("pii", file=keyring_path).category == "pii"


def test_keyring_loads_from_an_environment_variable(keyring_path, monkeypatch):
    monkeypatch.setenv("DRFLEET_TEST_PII_KEYRING", keyring_path.read_text())
    from_env = load_keyring("pii", env="DRFLEET_TEST_PII_KEYRING")
    assert from_env.key_ids == load_keyring("pii", file=keyring_path).key_ids


def test_missing_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(KeyringNotFound) as caught:
        load_keyring("pii", file=missing)
    assert str(missing) in str(caught.value)


def test_creating_in_a_missing_directory_names_the_path(tmp_path):
    target = tmp_path / "no-such-dir" / "pii.json"
    with pytest.raises(KeyringNotFound) as caught:
        create_keyring(target, "pii")
    assert str(target) in str(caught.value)


def test_a_directory_is_not_a_keyring(tmp_path):
    with pytest.raises(KeyringError) as caught:
        load_keyring("pii", file=tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_unset_variable_error_names_the_variable(monkeypatch):
    monkeypatch.delenv("DRFLEET_TEST_UNSET", raising=False)
    with pytest.raises(KeyringNotFound) as caught:
        load_keyring("pii", env="DRFLEET_TEST_UNSET")
    assert "DRFLEET_TEST_UNSET" in str(caught.value)


def test_malformed_variable_error_never_echoes_its_value(monkeypatch):
    secret = base64.b64encode(b"s" * 32).decode()
    monkeypatch.setenv("DRFLEET_TEST_BAD", f'{{"format": "drfleet-keyring", "material": "{secret}"')
    with pytest.raises(KeyringInvalid) as caught:
        load_keyring("pii", env="DRFLEET_TEST_BAD")
    assert "DRFLEET_TEST_BAD" in str(caught.value) and secret not in str(caught.value)


def test_giving_both_or_neither_source_is_an_error(keyring_path):
    with pytest.raises(KeyringError):
        load_keyring("pii")
    with pytest.raises(KeyringError):
        load_keyring("pii", file=keyring_path, env="X")


def test_keyring_of_another_category_is_refused(keyring_path):
    with pytest.raises(KeyringInvalid) as caught:
        load_keyring("standard", file=keyring_path)
    assert "'pii'" in str(caught.value) and "'standard'" in str(caught.value)


def test_key_whose_material_does_not_match_its_id_is_refused_without_showing_it(keyring_path):
    document = json.loads(keyring_path.read_text())
    pasted = base64.b64encode(os.urandom(32)).decode()
    document["keys"][0]["material"] = pasted
    keyring_path.write_text(json.dumps(document))
    with pytest.raises(KeyringInvalid) as caught:
        load_keyring("pii", file=keyring_path)
    assert caught.value.facts["key_id"] == document["keys"][0]["id"]
    assert pasted not in str(caught.value)


@pytest.mark.parametrize("change", [{"version": 2}, {"format": "something-else"}, {"active": "pii-x"},
                                    {"keys": []}])
def test_keyring_of_unknown_version_or_shape_is_refused(keyring_path, change):
    document = {**json.loads(keyring_path.read_text()), **change}
    keyring_path.write_text(json.dumps(document))
    with pytest.raises(KeyringInvalid):
        load_keyring("pii", file=keyring_path)


def test_asking_for_an_absent_key_names_category_and_key_and_says_what_to_do(keyring):
    with pytest.raises(KeyNotInKeyring) as caught:
        keyring.get("pii-20200101-deadbeef")
    message = str(caught.value)
    assert "pii-20200101-deadbeef" in message and "'pii'" in message
    assert "drfleet keys" in caught.value.hint


def test_keys_never_show_or_pickle_their_material(keyring, keyring_path):
    material = keyring.active.material
    shown = repr(keyring.active) + str(keyring.active) + repr(keyring) + str(keyring)
    for encoding in (material.hex(), base64.b64encode(material).decode(), repr(material)):
        assert encoding not in shown
    assert keyring.active.id in shown
    for secret in (keyring, keyring.active):
        with pytest.raises(SecretNotSerializable):
            pickle.dumps(secret)
    assert all(m not in shown for m in materials(keyring_path))
