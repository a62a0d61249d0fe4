"""`drfleet standby create --on HOST`: a standby built over SSH on another plan host (an
sshd of the `local` provider, host key checked), streaming from a real primary; promoted
over SSH; refused before anything runs when the host's key changed or the host is unknown."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.providers.clouds.base import ServerSpec
from tests.fixtures.util import free_port, wait_for
from tests.runbooks.conftest import world  # noqa: F401 - the hosts of the `local` provider
from tests.runbooks.pg_pair import in_recovery, owned_dir, primary_with_replication, stop_cluster_in


@pytest.fixture
def remote(world, monkeypatch, tmp_path):  # noqa: F811 - the fixture imported above
    primary = primary_with_replication()
    target = owned_dir("drfleet-remote-standby-")
    try:
        primary.psql("CREATE TABLE accounts (id int PRIMARY KEY, owner text); INSERT INTO accounts VALUES (1, 'ann')")
        db_host, _ = world.cloud.create_server(ServerSpec(name="db-2"))
        with open(world.known_hosts, "a") as known:
            known.write(f"[127.0.0.1]:{db_host.ssh_port} {db_host.host_key}\n")
        world.env["APP_DB_URL"] = primary.dsn()
        monkeypatch.setenv("APP_DB_URL", primary.dsn())
        monkeypatch.setenv("DRFLEET_HOME", str(tmp_path / "home"))
        datasets = ("app-db:\n  kind: postgres\n  region: eu-central\n  connection: {env: APP_DB_URL}\n"
                    "  key: content\n  rpo: 1h\n  rto: 15m\n"
                    "  policies:\n    - {name: daily, trigger: daily, keep: 7 days, copies: [home-region]}\n")
        path = world.write(datasets=datasets, services="services: {}\n", hosts=[world.host_line("db-2", db_host)])
        yield primary, str(path), target / "data", free_port()
    finally:
        stop_cluster_in(target / "data")
        shutil.rmtree(target, ignore_errors=True)
        primary.cleanup()


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_a_standby_is_built_on_another_host_streams_and_is_promoted_there(remote):
    primary, plan, data_dir, port = remote

    made = _cli("standby", "create", "app-db", "--plan", plan, "--on", "db-2", "--to", str(data_dir),
                "--port", str(port), "--json")

    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["host"] == "db-2"
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    assert in_recovery(dsn)
    primary.psql("INSERT INTO accounts VALUES (2, 'bob')")
    wait_for(lambda: psycopg.connect(dsn).execute("SELECT count(*) FROM accounts").fetchone()[0] == 2,
             timeout=30, what="the remote standby to replay the write")
    again = _cli("standby", "create", "app-db", "--plan", plan, "--on", "db-2", "--to", str(data_dir),
                 "--port", str(port))
    assert again.exit_code == 0, again.output  # running already: nothing rebuilt

    promoted = _cli("standby", "promote", "app-db", "--plan", plan, "--json")

    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.output)["host"] == "db-2" and not in_recovery(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts VALUES (3, 'cy')")


def test_a_changed_host_key_is_refused_before_anything_runs(remote, world):  # noqa: F811
    _primary, plan, data_dir, port = remote
    lines = world.known_hosts.read_text().splitlines()
    other = world.cloud.create_server(ServerSpec(name="impostor"))[0]
    lines[-1] = lines[-1].rsplit(" ", 2)[0] + " " + other.host_key  # db-2's entry with another key
    world.known_hosts.write_text("\n".join(lines) + "\n")

    run = _cli("standby", "create", "app-db", "--plan", plan, "--on", "db-2", "--to", str(data_dir),
               "--port", str(port))

    assert run.exit_code == 1
    assert "host key" in run.output.lower()
    assert not data_dir.exists()


def test_an_unknown_host_is_a_clear_error(remote):
    _primary, plan, data_dir, _port = remote

    run = _cli("standby", "create", "app-db", "--plan", plan, "--on", "db-9", "--to", str(data_dir))

    assert run.exit_code == 1
    assert "host 'db-9' is not in the plan" in run.output and "db-2" in run.output
