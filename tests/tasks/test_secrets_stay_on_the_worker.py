"""Secrets are resolved on the worker: no message that crossed the broker, no result, and
no log line of a backup run contains a password or key material."""

import base64
import json
import threading

import pytest
import redis

from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy

PG_DATASET = (dataset("app-db", policy("hourly", "hourly", "24 hours"), kind="postgres", connection="APP_DB_URL",
                    rpo="5m")
            + dataset("broken-db", policy("hourly", "hourly", "24 hours"), kind="postgres",
                    connection="BROKEN_DB_URL", rpo="5m"))


class BrokerTap:
    """Records every command the broker's Redis executes (MONITOR), for the test's duration."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.lines: list[bytes] = []
        self._monitor = self.client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for event in self._monitor.listen():
                self.lines.append(event["command"].encode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - connection closed at the end
            pass

    def close(self):
        try:
            self._monitor.connection.disconnect()
        except Exception:  # noqa: BLE001
            pass

    def decoded(self) -> str:
        """Everything seen, with kombu's base64 message bodies decoded."""
        out = []
        for raw in self.lines:
            text = raw.decode("utf-8", "replace")
            out.append(text)
            for token in text.replace("\\\"", "\"").split('"'):
                if len(token) > 16 and token.endswith("=") or len(token) > 40:
                    try:
                        out.append(base64.b64decode(token, validate=True).decode("utf-8", "replace"))
                    except Exception:  # noqa: BLE001 - not base64
                        pass
        return "\n".join(out)


@pytest.fixture
def pg_fleet(tmp_path, redis_url, pg_cluster, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring

    pg_cluster.ensure_secret_role()
    pg_cluster.create_database("app")
    pg_cluster.psql("CREATE TABLE IF NOT EXISTS t (id int primary key, v text); "
                    "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g ON CONFLICT DO NOTHING", "app")
    plan_path = write_plan(tmp_path / "plan", datasets=PG_DATASET)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    secret_dsn = pg_cluster.dsn("app", secret=True)
    broken_dsn = pg_cluster.dsn("no_such_db", secret=True)
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    fleet = Fleet(tmp_path, redis_url, plan_path,
                  env_extra={"APP_DB_URL": secret_dsn, "BROKEN_DB_URL": broken_dsn})
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = redis_url
    yield fleet, pg_cluster.SECRET_PASSWORD, tmp_path / "plan" / "keys" / "content.keyring"
    fleet.stop()


def test_no_secret_crosses_the_broker_or_reaches_a_log(pg_fleet, redis_url):
    from drfleet.tasks.backup import backup

    fleet, password, keyring_path = pg_fleet
    key_material = json.loads(keyring_path.read_text())["keys"][0]["material"]
    worker = fleet.worker("eu-central")
    tap = BrokerTap(redis_url)
    try:
        ok = backup.apply_async(kwargs={"dataset": "app-db", "policy": "hourly", "region": "eu-central",
                                        "slot": "s1"}).get(timeout=120)
        assert ok["status"] == "committed"
        failed = backup.apply_async(kwargs={"dataset": "broken-db", "policy": "hourly", "region": "eu-central",
                                            "slot": "s1"})
        with pytest.raises(Exception) as info:
            failed.get(timeout=120)
    finally:
        tap.close()
    seen = tap.decoded()
    assert "app-db" in seen and "broken-db" in seen, "the tap did not see the task messages"
    assert "no_such_db" in str(info.value), "the failure should say which database is missing"
    for secret in (password, key_material):
        assert secret not in seen
        assert secret not in str(info.value)
        assert secret not in worker.output()
    stored = redis.Redis.from_url(redis_url)
    for k in stored.scan_iter("celery-task-meta-*"):
        assert password.encode() not in stored.get(k)


# --- passwords typed into arguments -------------------------------------------------

TYPED = "Typ3d-pa55-4417"
TYPED_FORMS = [f"postgresql://app:{TYPED}@127.0.0.1:1/app",
               f"postgresql://app@127.0.0.1:1/app?sslmode=disable&password={TYPED}",
               f"host=127.0.0.1 port=1 dbname=app user=app password={TYPED}"]
# the commands that carry a message's body in the broker itself (its own transport): what
# is sent (a crafted message holds the password there) and the worker's unacked copy
TRANSPORT = ("LPUSH", "RPUSH", "HSET unacked", "ZADD unacked_index")


def _commands_holding(tap: BrokerTap, secret: str) -> list[str]:
    """Every command the tap saw (message bodies decoded) that holds ``secret``, except the
    broker's own transport of a message."""
    held = []
    for raw in tap.lines:
        text = raw.decode("utf-8", "replace")
        if text.startswith(TRANSPORT):
            continue
        single = BrokerTap.__new__(BrokerTap)
        single.lines = [raw]
        if secret in single.decoded():
            held.append(text[:200])
    return held


@pytest.fixture
def files_fleet(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    plan_path = write_plan(tmp_path / "plan")
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    for name, value in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                        "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = app.conf.redbeat_redis_url = redis_url
    backup_id = run_backup(load_plan(plan_path), "site", "hourly", region="eu-central")["backup_id"]
    fleet = Fleet(tmp_path, redis_url, plan_path)
    yield fleet, plan_path, f"site/{backup_id}"
    fleet.stop()


@pytest.mark.parametrize("command", [
    ["restore", "{backup}", "--to", "{secret}", "--timeout", "3"],
    ["restore", "{backup}", "--to", "{secret}", "--local"],
    ["restore", "site", "--at", "latest", "--to", "{secret}"],
    ["standby", "create", "site", "--to", "{secret}"],
    ["standby", "promote", "site", "--data-dir", "{secret}"],
], ids=["restore", "restore-local", "restore-at", "standby-create", "standby-promote"])
def test_the_cli_refuses_a_typed_password_before_anything_is_sent(files_fleet, redis_url, command):
    from click.testing import CliRunner

    from drfleet.cli.main import main

    _, plan_path, backup = files_fleet
    tap = BrokerTap(redis_url)
    try:
        for secret in TYPED_FORMS:
            argv = [part.format(backup=backup, secret=secret) for part in command]
            result = CliRunner().invoke(main, [*argv, "--plan", str(plan_path)])
            assert result.exit_code == 2, result.output
            assert "holds a" in result.output and "env:VARIABLE or file:" in result.output
            assert TYPED not in result.output and "***" in result.output
    finally:
        tap.close()
    assert TYPED not in tap.decoded(), "the password reached Redis"


def test_a_crafted_message_with_a_password_is_refused_and_never_recorded(files_fleet, redis_url):
    from drfleet.state.audit import AUDIT_STREAM
    from drfleet.workers import app

    fleet, _, backup = files_fleet
    worker = fleet.worker("eu-central")
    tap = BrokerTap(redis_url)
    errors = []
    try:
        for secret in TYPED_FORMS:  # what a hand-made message could carry; the CLI never sends it
            sent = app.send_task("drfleet.restore", kwargs={"backup_id": backup, "target": secret,
                                                             "region": "eu-central"})
            with pytest.raises(Exception) as info:
                sent.get(timeout=60)
            errors.append(str(info.value))
    finally:
        tap.close()
    for error in errors:
        assert "refused" in error and "target holds a password inline" in error
        assert TYPED not in error
    assert _commands_holding(tap, TYPED) == [], "a result, audit record or event held the password"
    stored = redis.Redis.from_url(redis_url)
    metas = [stored.get(k) for k in stored.scan_iter("celery-task-meta-*")]
    assert metas and all(TYPED.encode() not in meta for meta in metas)
    audit = stored.xrange(AUDIT_STREAM)
    assert any(b"InlineSecretRefused" in value for _, fields in audit for value in fields.values())
    assert all(TYPED.encode() not in value for _, fields in audit for value in fields.values())
    assert "holds a password inline" in worker.output() and TYPED not in worker.output()
