"""The local provider: each server is a real sshd on its own loopback port with its own
host key, authorized keys and root directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from drfleet.providers.clouds import open_cloud
from drfleet.providers.clouds.base import RUNNING, STOPPED, CloudConfigError, ProviderNotFound, ServerSpec
from drfleet.providers.ssh import HostUnreachable, SshSession, SshTarget
from tests.fixtures.util import port_open


@pytest.fixture
def login(tmp_path) -> Path:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture
def cloud(tmp_path):
    client = open_cloud("local", {"root": str(tmp_path / "hosts")})
    yield client
    for server in client.list_servers():
        client.delete_server(server.id)


def target(server, key: Path, tmp_path: Path) -> SshTarget:
    known = tmp_path / f"known-{server.id}"
    known.write_text(f"[{server.ipv4}]:{server.ssh_port} {server.host_key}\n")
    return SshTarget(host=server.ipv4, port=server.ssh_port, user="root", key_file=str(key),
                     known_hosts_file=str(known), connect_timeout=5)


def test_a_created_server_is_reachable_over_ssh_with_its_own_root(cloud, login, tmp_path) -> None:
    key_id = cloud.upload_ssh_key("ops", Path(f"{login}.pub").read_text())
    server, action = cloud.create_server(ServerSpec(name="web-1", ssh_key_ids=(key_id,), labels={"role": "web"}))

    assert action is None and server.status == RUNNING
    with SshSession(target(server, login, tmp_path)) as ssh:
        root = ssh.run(["sh", "-c", "echo $DRFLEET_ROOT"]).stdout.decode().strip()
        ssh.run(["sh", "-c", "echo hi > $DRFLEET_ROOT/marker"])
    assert root == server.root
    assert (Path(server.root) / "marker").read_text() == "hi\n"
    assert cloud.wait_until_running(server.id, 5).id == server.id


def test_servers_are_listed_by_label_and_seen_by_another_client(cloud, login, tmp_path) -> None:
    cloud.upload_ssh_key("ops", Path(f"{login}.pub").read_text())
    web, _ = cloud.create_server(ServerSpec(name="web", labels={"role": "web"}))
    db, _ = cloud.create_server(ServerSpec(name="db", labels={"role": "db"}))

    other = open_cloud("local", {"root": str(cloud.root)})
    assert [s.name for s in other.list_servers("role=web")] == ["web"]
    assert {s.id for s in other.list_servers()} == {web.id, db.id}
    assert web.ssh_port != db.ssh_port


def test_a_powered_off_server_is_stopped_and_unreachable(cloud, login, tmp_path) -> None:
    cloud.upload_ssh_key("ops", Path(f"{login}.pub").read_text())
    server, _ = cloud.create_server(ServerSpec(name="doomed"))

    cloud.power_off(server.id)

    assert cloud.get_server(server.id).status == STOPPED
    with pytest.raises(HostUnreachable):
        SshSession(target(server, login, tmp_path)).connect()
    cloud.power_on(server.id)
    assert cloud.get_server(server.id).status == RUNNING


def test_a_deleted_server_is_gone(cloud, login) -> None:
    cloud.upload_ssh_key("ops", Path(f"{login}.pub").read_text())
    server, _ = cloud.create_server(ServerSpec(name="gone"))

    cloud.delete_server(server.id)

    assert not port_open(server.ssh_port)
    with pytest.raises(ProviderNotFound):
        cloud.get_server(server.id)


def test_an_unknown_key_id_is_refused(cloud) -> None:
    with pytest.raises(ProviderNotFound):
        cloud.create_server(ServerSpec(name="x", ssh_key_ids=("nope",)))


def test_unknown_settings_are_refused(tmp_path) -> None:
    with pytest.raises(CloudConfigError):
        open_cloud("local", {"root": str(tmp_path), "token_env": "X"})
