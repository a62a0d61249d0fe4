"""tools/drfleet-decrypt, run as an operator would: a separate process, stdout piped to zstd."""

import ast
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from drfleet.backup_format.keyring import create_keyring
from tests.backup_format.conftest import write_backup

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "drfleet-decrypt"
ZSTD = "/usr/bin/zstd"


def some_dump(size=300_000):
    rng = random.Random(7)
    words = [b"INSERT", b"INTO", b"orders", b"VALUES", b"(42,", b"'paid');", b"\n", b"\x00\xff"]
    return b" ".join(rng.choice(words) for _ in range(size // 5))[:size]


def decrypt(backup, keyring_path, *extra):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--keyring", str(keyring_path), "--manifest", str(backup.manifest_path),
         "--objects-dir", str(backup.objects_dir), *extra],
        capture_output=True, timeout=60)


def decompress(stream):
    if os.access(ZSTD, os.X_OK):
        return subprocess.run([ZSTD, "-d", "-c", "-q"], input=stream, capture_output=True, check=True,
                              timeout=60).stdout
    return zstandard.ZstdDecompressor().decompressobj().decompress(stream)


@pytest.fixture
def backup(tmp_path, keyring):
    return write_backup(tmp_path / "restore", keyring, some_dump())


def test_script_is_executable_and_imports_only_stdlib_and_cryptography():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    tree = ast.parse(SCRIPT.read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_decrypted_stream_decompresses_to_the_original_dump(backup, keyring_path):
    result = decrypt(backup, keyring_path)
    assert result.returncode == 0, result.stderr.decode()
    assert decompress(result.stdout) == backup.dump


def test_one_object_can_be_decrypted_alone(backup, keyring_path):
    second = backup.manifest.objects[1]
    result = decrypt(backup, keyring_path, "--object", second.name)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == second.plaintext_size


def test_a_corrupted_object_fails_before_anything_is_written(backup, keyring_path):
    victim = backup.objects_dir / backup.manifest.objects[2].name
    damaged = bytearray(victim.read_bytes())
    damaged[100] ^= 0x01
    victim.write_bytes(bytes(damaged))
    result = decrypt(backup, keyring_path)
    assert result.returncode == 1
    assert result.stdout == b""
    assert backup.manifest.objects[2].name.encode() in result.stderr


def test_a_tampered_manifest_is_refused(backup, keyring_path):
    document = json.loads(backup.manifest_path.read_bytes())
    document["plaintext_size"] += 1
    backup.manifest_path.write_text(json.dumps(document))
    result = decrypt(backup, keyring_path)
    assert result.returncode == 1 and result.stdout == b""
    assert b"MAC" in result.stderr


def test_the_wrong_keyring_is_refused_naming_the_key_needed(backup, tmp_path):
    other = tmp_path / "other.json"
    create_keyring(other, "pii")
    result = decrypt(backup, other)
    assert result.returncode == 1 and result.stdout == b""
    assert backup.manifest.keys[0]["key_id"].encode() in result.stderr


def test_a_keyring_readable_by_others_is_refused_with_the_fix(backup, keyring_path):
    os.chmod(keyring_path, 0o644)
    result = decrypt(backup, keyring_path)
    assert result.returncode == 2
    assert f"chmod 600 {keyring_path}".encode() in result.stderr


def test_a_missing_object_is_an_input_error(backup, keyring_path):
    (backup.objects_dir / backup.manifest.objects[0].name).unlink()
    result = decrypt(backup, keyring_path)
    assert result.returncode == 2 and result.stdout == b""
    assert backup.manifest.objects[0].name.encode() in result.stderr


def test_verify_only_checks_everything_and_writes_nothing(backup, keyring_path):
    result = decrypt(backup, keyring_path, "--verify-only")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""


def test_script_runs_on_the_hosts_own_python_too(backup, keyring_path):
    host_python = shutil.which("python3", path="/usr/bin:/bin")
    if host_python is None or subprocess.run([host_python, "-c", "import cryptography"],
                                             capture_output=True).returncode != 0:
        pytest.skip("no host python3 with the cryptography package")
    result = subprocess.run(
        [host_python, str(SCRIPT), "--keyring", str(keyring_path), "--manifest", str(backup.manifest_path),
         "--objects-dir", str(backup.objects_dir)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert decompress(result.stdout) == backup.dump
