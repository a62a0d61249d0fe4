"""Redis credentials and TLS, and signed task messages, against a real redis-server and
real worker, beat and CLI processes.

Every client here is a separate process configured only through the environment, as in a
deployment: `drfleet ping` (a probe task through broker, result backend and the state
client) and a small sender script for messages that must be refused."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from drfleet.state.redis_security import RedisAuthFailed, RedisUnreachable, check_connection
from tests.fixtures.fleet import ROOT, CeleryProcess, Fleet, write_plan
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.util import free_port, port_open, wait_for

PASSWORD = "s3cret-Redis-pw-7f1c"
ACL_PASSWORD = "acl-pw-4b9e-Zq"
# what docs/operations.md recommends for the drfleet user: every key and channel, no admin commands
ACL_USER = ["--user", "drfleet", "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all", "-@admin"]


# --- certificates, generated per test ------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_cert(directory: Path, name: str, *, issuer=None, ca: bool = False, ip: str | None = None):
    """A key and certificate ``{name}.key``/``{name}.pem``; self-signed unless ``issuer``
    (key, cert) is given. Returns (key, cert)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_key, signer_cert = issuer or (key, None)
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(signer_cert.subject if signer_cert else _name(name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    _write_key(key, directory / f"{name}.key")
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def redis_supports_tls() -> bool:
    """A TLS build tries (and here fails) to load the certificate files; one without TLS
    rejects the directive itself."""
    out = subprocess.run(["redis-server", "--port", "0", "--tls-port", str(free_port()), "--tls-cert-file",
                          "/nonexistent.pem", "--tls-key-file", "/nonexistent.key"],
                         capture_output=True, text=True, timeout=30)
    return "Failed to configure TLS" in out.stdout + out.stderr


# --- helpers ---------------------------------------------------------------------------------

def client_env(broker: str, **extra) -> dict:
    env = dict(os.environ, DRFLEET_BROKER_URL=broker, DRFLEET_STATE_URL=broker, PYTHONPATH=str(ROOT), **extra)
    for name in ("DRFLEET_REGION", "DRFLEET_RESULT_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def drfleet(env: dict, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drfleet.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


SEND_PROBE = """
import json, sys
from drfleet.tasks.probe import probe
result = probe.apply_async(kwargs={"region": sys.argv[1], "tag": sys.argv[2]})
print(result.id)
"""


def send_probe(env: dict, region: str, tag: str) -> str:
    out = subprocess.run([sys.executable, "-c", SEND_PROBE, region, tag], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def probes(client: redis.Redis, tag: str) -> list[dict]:
    return [json.loads(x) for x in client.lrange(f"drfleet:probe:{tag}", 0, -1)]


@pytest.fixture
def password_server(tmp_path):
    server = RedisServer(password=PASSWORD, extra_args=ACL_USER).start()
    yield server
    server.cleanup()


@pytest.fixture
def secrets_dir(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o700)
    (directory / "redis-password").write_text(ACL_PASSWORD + "\n")
    return directory


# --- password and ACL user -------------------------------------------------------------------

def test_worker_and_cli_use_the_acl_user_and_password_file(tmp_path, password_server, secrets_dir):
    plan = write_plan(tmp_path / "plan")
    broker = f"redis://127.0.0.1:{password_server.port}/0"  # no password in any URL
    env = {"DRFLEET_REDIS_USERNAME": "drfleet", "DRFLEET_REDIS_PASSWORD_FILE": str(secrets_dir / "redis-password")}
    fleet = Fleet(tmp_path, broker, plan, env_extra=env)
    try:
        worker = fleet.worker("eu-central")
        out = drfleet(client_env(broker, DRFLEET_PLAN=str(plan), **env), "ping", "--region", "eu-central", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["worker_region"] == "eu-central"
        assert ACL_PASSWORD not in worker.output()
        assert "redis://drfleet:**@127.0.0.1" in worker.output()  # the banner shows the user, masks the password
        acl = redis.Redis(port=password_server.port, password=PASSWORD)
        assert b"drfleet" in acl.execute_command("CLIENT", "LIST")  # connections authenticated as the ACL user
    finally:
        fleet.stop()


def test_a_wrong_password_stops_the_worker_with_a_clear_error_that_hides_it(tmp_path, password_server):
    plan = write_plan(tmp_path / "plan")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password-91d2")
    broker = f"redis://127.0.0.1:{password_server.port}/0"
    env = client_env(broker, DRFLEET_PLAN=str(plan), DRFLEET_REDIS_USERNAME="drfleet",
                     DRFLEET_REDIS_PASSWORD_FILE=str(wrong))
    worker = CeleryProcess(["worker", "--region", "eu-central", "-c", "1", "-n", "wrong@test"], env,
                           tmp_path / "wrong.log", ready_text="")
    worker.start()
    try:
        assert worker.proc.wait(60) == 2
    finally:
        worker.kill()
    log = worker.output()
    assert "Redis refused the credentials" in log
    assert f"redis://drfleet:**@127.0.0.1:{password_server.port}/0" in log
    assert "DRFLEET_REDIS_PASSWORD_FILE" in log  # what to do next
    assert "not-the-password-91d2" not in log
    beat = CeleryProcess(["beat", "-s", str(tmp_path / "beat.db")], env, tmp_path / "beat.log", ready_text="")
    beat.start()
    try:
        assert beat.proc.wait(60) == 2
    finally:
        beat.kill()
    assert "beat broker: Redis refused the credentials" in beat.output()
    assert "not-the-password-91d2" not in beat.output()
    cli = drfleet(env, "status")  # the CLI says the same, without a traceback
    assert cli.returncode == 1
    assert "error: broker: Redis refused the credentials" in cli.stderr and "Traceback" not in cli.stderr
    assert "not-the-password-91d2" not in cli.stdout + cli.stderr


def test_check_connection_names_the_failure_never_the_password(password_server):
    url = f"redis://:wrong-pw-5521@127.0.0.1:{password_server.port}/0"
    with pytest.raises(RedisAuthFailed) as failed:
        check_connection(url, env={})
    assert "wrong-pw-5521" not in str(failed.value) and ":**@" in str(failed.value)
    with pytest.raises(RedisAuthFailed) as anonymous:
        check_connection(f"redis://127.0.0.1:{password_server.port}/0", env={})
    assert "refused the credentials" in str(anonymous.value)
    check_connection(f"redis://drfleet:{ACL_PASSWORD}@127.0.0.1:{password_server.port}/0", env={})


# --- TLS -------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path):
    if not redis_supports_tls():
        pytest.skip("the installed redis-server is built without TLS (see `redis-server --tls-port`)")
    certs = tmp_path / "certs"
    ca = make_cert(certs, "ca", ca=True)
    make_cert(certs, "server", issuer=ca, ip="127.0.0.1")
    make_cert(certs, "client", issuer=ca)
    tls_port = free_port()
    server = RedisServer(password=PASSWORD, extra_args=ACL_USER + [
        "--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.pem"),
        "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.pem"),
        "--tls-auth-clients", "yes"]).start()
    wait_for(lambda: port_open(tls_port), timeout=15, what="redis TLS port")
    server.tls_port, server.certs = tls_port, certs
    yield server
    server.cleanup()


def tls_env(server) -> dict:
    certs = server.certs
    return {"DRFLEET_REDIS_CA_FILE": str(certs / "ca.pem"), "DRFLEET_REDIS_CERT_FILE": str(certs / "client.pem"),
            "DRFLEET_REDIS_KEY_FILE": str(certs / "client.key")}


def test_worker_beat_and_cli_run_over_rediss_with_verified_certificates(tmp_path, tls_server, secrets_dir):
    plan = write_plan(tmp_path / "plan")
    broker = f"rediss://127.0.0.1:{tls_server.tls_port}/0"
    env = {"DRFLEET_REDIS_USERNAME": "drfleet", "DRFLEET_REDIS_PASSWORD_FILE": str(secrets_dir / "redis-password"),
           **tls_env(tls_server)}
    fleet = Fleet(tmp_path, broker, plan, env_extra=env)
    try:
        worker = fleet.worker("eu-central")
        beat = fleet.beat()
        out = drfleet(client_env(broker, DRFLEET_PLAN=str(plan), **env), "ping", "--region", "eu-central", "--json")
        assert out.returncode == 0, out.stderr
        run = json.loads(out.stdout)
        assert run["worker_region"] == "eu-central"
        direct = redis.Redis(host="127.0.0.1", port=tls_server.tls_port, ssl=True, username="drfleet",
                             password=ACL_PASSWORD, ssl_ca_certs=str(tls_server.certs / "ca.pem"),
                             ssl_certfile=str(tls_server.certs / "client.pem"),
                             ssl_keyfile=str(tls_server.certs / "client.key"))
        # the probe task wrote through the state client, its result went through the result backend
        assert direct.keys("drfleet:probe:*") and direct.keys(f"celery-task-meta-{run['task_id']}")
        # beat keeps its schedule and lock in Redis over the same TLS connection settings
        wait_for(lambda: direct.keys("drfleet:redbeat:*"), timeout=30, what="RedBeat keys over TLS")
        assert "rediss://drfleet:**@127.0.0.1" in worker.output()
        assert ACL_PASSWORD not in worker.output() + beat.output()
    finally:
        fleet.stop()


def test_a_server_certificate_from_another_ca_is_refused(tmp_path, tls_server):
    other = make_cert(tmp_path / "other", "other-ca", ca=True)
    assert other
    env = {**tls_env(tls_server), "DRFLEET_REDIS_CA_FILE": str(tmp_path / "other" / "other-ca.pem")}
    url = f"rediss://drfleet:{ACL_PASSWORD}@127.0.0.1:{tls_server.tls_port}/0"
    with pytest.raises(RedisUnreachable) as refused:
        check_connection(url, env=env)
    assert "certificate verify failed" in str(refused.value)
    assert ACL_PASSWORD not in str(refused.value)


# --- message signing -------------------------------------------------------------------------

@pytest.fixture
def signing(tmp_path):
    """A trusted signer (its certificate in the store) and an untrusted one."""
    directory = tmp_path / "signing"
    make_cert(directory, "fleet")
    make_cert(directory / "untrusted", "intruder")
    (directory / "untrusted-store").mkdir()
    (directory / "untrusted-store" / "intruder.pem").write_bytes((directory / "untrusted" / "intruder.pem").read_bytes())
    store = directory / "trusted"
    store.mkdir()
    (store / "fleet.pem").write_bytes((directory / "fleet.pem").read_bytes())
    trusted = {"DRFLEET_SIGN_MESSAGES": "1", "DRFLEET_SIGNING_KEY": str(directory / "fleet.key"),
               "DRFLEET_SIGNING_CERT": str(directory / "fleet.pem"), "DRFLEET_SIGNING_CERT_STORE": str(store)}
    intruder = dict(trusted, DRFLEET_SIGNING_KEY=str(directory / "untrusted" / "intruder.key"),
                    DRFLEET_SIGNING_CERT=str(directory / "untrusted" / "intruder.pem"),
                    DRFLEET_SIGNING_CERT_STORE=str(directory / "untrusted-store"))
    return trusted, intruder


def test_signed_tasks_run_and_unsigned_or_forged_ones_are_refused(tmp_path, redis_url, signing):
    trusted, intruder = signing
    plan = write_plan(tmp_path / "plan")
    fleet = Fleet(tmp_path, redis_url, plan, env_extra=trusted)
    base = client_env(redis_url, DRFLEET_PLAN=str(plan))
    plain = {k: v for k, v in base.items() if not k.startswith("DRFLEET_SIGN")}
    client = redis.Redis.from_url(redis_url)
    try:
        tag = uuid.uuid4().hex
        # a message whose signed body was altered after signing (tag changed) waits in the queue
        send_probe(dict(base, **trusted), "eu-central", tag + "-original")
        raw = json.loads(client.lpop("eu-central.control"))
        assert raw["content-type"] == "application/data"  # the auth serializer's envelope
        raw["body"] = _tamper(raw["body"], (tag + "-original").encode(), (tag + "-tampered").encode())
        client.rpush("eu-central.control", json.dumps(raw))
        worker = fleet.worker("eu-central")
        unsigned_id = send_probe(plain, "eu-central", tag + "-unsigned")
        forged_id = send_probe(dict(base, **intruder), "eu-central", tag + "-forged")
        out = drfleet(dict(base, **trusted), "ping", "--region", "eu-central", "--json")  # behind the others
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["worker_region"] == "eu-central"
        for suffix in ("-original", "-tampered", "-unsigned", "-forged"):
            assert probes(client, tag + suffix) == [], f"the {suffix[1:]} message ran"
        log = worker.output()
        assert "Refusing to deserialize untrusted content of type json" in log
        assert log.count("Unable to deserialize") >= 2  # the tampered and the forged messages
        assert unsigned_id and forged_id
    finally:
        fleet.stop()


def _tamper(body_b64: str, old: bytes, new: bytes) -> str:
    """Replace ``old`` by ``new`` inside the signed payload, keeping the signature."""
    outer = base64.b64decode(body_b64)
    inner = base64.b64decode(outer)
    assert old in inner
    return base64.b64encode(base64.b64encode(inner.replace(old, new))).decode()


def test_signing_without_its_files_is_a_clear_error(tmp_path):
    from drfleet.workers.settings import SigningMisconfigured, celery_config
    with pytest.raises(SigningMisconfigured) as missing:
        celery_config(["eu-central"], env={"DRFLEET_BROKER_URL": "redis://127.0.0.1:1/0", "DRFLEET_SIGN_MESSAGES": "1",
                                           "DRFLEET_SIGNING_KEY": str(tmp_path / "nope.key")})
    assert "DRFLEET_SIGNING_CERT" in str(missing.value) and "docs/security.md" in str(missing.value)
