"""compose/docker-compose.sentinel.yml: the control plane spread over three regions.

Structure (always): three Redis nodes and three sentinels in three regions with quorum 2,
beats in two regions, every drfleet process configured for the sentinels and not for a
single broker, no password in any argv. Behaviour (real processes, no containers): the
nodes' and sentinels' own start-up scripts from the compose file are run on loopback (their
host names and ports mapped to free loopback ports, secrets and volumes to a temporary
directory); drfleet reaches the master through them, and after the master is SIGKILLed the
sentinels, using the ACL users the scripts create, promote a replica that drfleet finds.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import redis

from drfleet.state.fleet_redis import connect_state, fleet_redis
from tests.compose.test_compose_file import command_of, load_compose, secret_targets, services_by_role
from tests.fixtures.util import free_port, kill, port_open, terminate, wait_for

OVERRIDE = "docker-compose.sentinel.yml"
NODES = ("redis", "redis-us-east", "redis-offsite")
SENTINELS = ("sentinel-eu-central", "sentinel-us-east", "sentinel-offsite")


@pytest.fixture(scope="module")
def base():
    return load_compose()


@pytest.fixture(scope="module")
def ha():
    return load_compose(OVERRIDE)


def merged_env(base: dict, ha: dict, name: str) -> dict[str, str]:
    env = dict(base["services"].get(name, {}).get("environment") or {})
    env.update(ha["services"][name].get("environment") or {})
    return {k: str(v) for k, v in env.items()}


def region(ha: dict, name: str) -> str:
    return ha["services"][name]["labels"]["drfleet.region"]


def test_three_nodes_and_three_sentinels_in_three_regions_with_quorum_two(ha):
    assert Counter(region(ha, n) for n in NODES) == Counter({"eu-central": 1, "us-east": 1, "offsite": 1})
    assert Counter(region(ha, s) for s in SENTINELS) == Counter({"eu-central": 1, "us-east": 1, "offsite": 1})
    for name in SENTINELS:
        script = " ".join(command_of(ha["services"][name]))
        assert "sentinel monitor drfleet redis 6379 2" in script
        assert "--sentinel" in script and "/data/sentinel.conf" in script
        assert any(v.endswith(":/data") for v in ha["services"][name]["volumes"]), "sentinel state must persist"
    replicas = [n for n in NODES if "--replicaof redis 6379" in ha["services"][n]["environment"]["REDIS_REPLICAOF"]]
    assert sorted(replicas) == ["redis-offsite", "redis-us-east"]
    script = " ".join(command_of(ha["services"]["redis"]))
    for flag in ("--min-replicas-to-write 1", "--appendonly yes", "--maxmemory-policy noeviction",
                 "user default off", "masteruser replication"):
        assert flag in script


def test_beats_run_in_two_regions_and_workers_in_their_own(base, ha):
    beats = services_by_role(base, "beat")
    assert len({region(ha, b) for b in beats}) == 2
    for name, service in services_by_role(base, "worker").items():
        argv = command_of(service)
        assert region(ha, name) == argv[argv.index("--region") + 1]


def test_every_drfleet_process_follows_the_sentinels_and_no_single_broker(base, ha):
    image = base["services"]["beat"]["image"]
    drfleet_services = [n for n, s in base["services"].items() if s.get("image") == image]
    assert {"worker-eu-central", "worker-us-east", "beat", "beat-standby", "flower", "drfleet-alerts"} <= set(drfleet_services)
    for name in drfleet_services:
        env = merged_env(base, ha, name)
        assert env["DRFLEET_BROKER_URL"] == "", f"{name} mixes a broker URL with the sentinels"
        assert env["DRFLEET_REDIS_SENTINELS"].split(",") == [f"{s}:26379" for s in SENTINELS]
        assert env["DRFLEET_REDIS_MASTER"] == "drfleet"
        assert env["DRFLEET_REDIS_SENTINEL_PASSWORD_FILE"] == "/run/secrets/redis_sentinel_password"
        assert "redis_sentinel_password" in secret_targets(ha["services"][name])
        fleet = fleet_redis(env)  # drfleet itself accepts the configuration
        assert fleet.sentinel and fleet.sentinel.master == "drfleet"


def test_the_sentinel_password_is_a_declared_secret_that_make_secrets_creates(ha):
    assert ha["secrets"]["redis_sentinel_password"] == {"file": "./secrets/redis_sentinel_password"}
    script = (Path(__file__).parents[2] / "compose" / "make-secrets.sh").read_text()
    assert re.search(r"^new redis_sentinel_password ", script, re.M)
    for name in NODES + SENTINELS:
        assert "redis_sentinel_password" in secret_targets(ha["services"][name])


# --- the scripts themselves, on loopback ------------------------------------------------------

class Topology:
    """Runs the compose file's node and sentinel scripts as local processes."""

    def __init__(self, ha: dict, root: Path) -> None:
        self.root = root
        self.ports = {n: free_port() for n in NODES + SENTINELS}
        (root / "secrets").mkdir(mode=0o700)
        (root / "secrets" / "redis_password").write_text("fleet-pw-0123456789\n")
        (root / "secrets" / "redis_sentinel_password").write_text("sentinel-pw-0123456789\n")
        self.procs: dict[str, subprocess.Popen] = {}
        self.ha = ha

    def script(self, name: str) -> tuple[str, dict[str, str]]:
        service = self.ha["services"][name]
        script = command_of(service)[2]
        data = self.root / name
        data.mkdir(exist_ok=True)
        port = self.ports[name]
        script = script.replace("/run/secrets/", f"{self.root}/secrets/").replace("/data/", f"{data}/")
        script = script.replace("/tmp/users.acl", f"{data}/users.acl").replace("/tmp/node.conf", f"{data}/node.conf").replace("--port 6379", f"--port {port}")
        script = script.replace("port 26379", f"port {port}").replace("redis 6379", f"127.0.0.1 {self.ports['redis']}")
        # a shorter outage detection than production's 5 s, so the test waits less
        script = script.replace("down-after-milliseconds drfleet 5000", "down-after-milliseconds drfleet 1000")
        script = script.replace("failover-timeout drfleet 60000", "failover-timeout drfleet 4000")
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        for key in ("REDIS_ANNOUNCE", "SENTINEL_ANNOUNCE"):
            if key in env:
                env[key] = "127.0.0.1"
        if env.get("REDIS_REPLICAOF"):
            env["REDIS_REPLICAOF"] = f"--replicaof 127.0.0.1 {self.ports['redis']}"
        return script, env

    def start(self, name: str) -> None:
        script, env = self.script(name)
        log = open(self.root / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(["sh", "-c", script], cwd=self.root / name, stdout=log, stderr=log,
                                            env={**os.environ, **env})
        wait_for(lambda: port_open(self.ports[name]) or self.procs[name].poll() is not None,
                 timeout=15, what=name)
        assert self.procs[name].poll() is None, (self.root / f"{name}.log").read_text()[-2000:]

    def env(self) -> dict[str, str]:
        return {"DRFLEET_REDIS_SENTINELS": ",".join(f"127.0.0.1:{self.ports[s]}" for s in SENTINELS),
                "DRFLEET_REDIS_MASTER": "drfleet", "DRFLEET_REDIS_USERNAME": "drfleet",
                "DRFLEET_REDIS_PASSWORD_FILE": f"{self.root}/secrets/redis_password",
                "DRFLEET_REDIS_SENTINEL_PASSWORD_FILE": f"{self.root}/secrets/redis_sentinel_password"}

    def stop(self) -> None:
        for proc in self.procs.values():
            terminate(proc)


def _master_port(env: dict[str, str]) -> int | None:
    try:
        client = connect_state(fleet_redis(env))
        client.set("probe", "1")
        return client.connection_pool.get_master_address()[1]
    except (redis.RedisError, OSError, AttributeError):
        return None


def test_the_scripts_start_a_topology_that_fails_over_and_drfleet_follows(ha, tmp_path):
    topo = Topology(ha, tmp_path)
    try:
        for name in NODES + SENTINELS:
            topo.start(name)
        env = topo.env()
        wait_for(lambda: _master_port(env) == topo.ports["redis"], timeout=20, what="drfleet writes through the master")
        client = connect_state(fleet_redis(env))
        wait_for(lambda: client.wait(2, 1000) == 2, timeout=20, what="both replicas acknowledge")
        client.set("before-failover", "kept")
        assert client.wait(2, 2000) == 2

        kill(topo.procs["redis"])  # the sh exec'd redis-server: the master is gone
        new = wait_for(lambda: (p := _master_port(env)) not in (None, topo.ports["redis"]) and p,
                       timeout=40, what="a replica promoted by the sentinels (their ACL user can fail over)")
        assert new in (topo.ports["redis-us-east"], topo.ports["redis-offsite"])
        client = connect_state(fleet_redis(env))
        assert client.get("before-failover") in (b"kept", "kept")
        # the remaining replica follows the new master: a write is acknowledged by it
        wait_for(lambda: client.wait(1, 1000) >= 1, timeout=30, what="the other replica re-pointed")
        for name, proc in topo.procs.items():
            if proc.poll() is None:  # no password in any process's argv
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                assert b"pw-0123456789" not in cmdline, name
    finally:
        topo.stop()
        logs = "".join((tmp_path / f"{n}.log").read_text() for n in NODES + SENTINELS
                       if (tmp_path / f"{n}.log").exists())
        assert "sentinel-pw-0123456789" not in logs and "fleet-pw-0123456789" not in logs


def test_the_master_refuses_writes_when_no_replica_is_connected(ha, tmp_path):
    topo = Topology(ha, tmp_path)
    try:
        topo.start("redis")
        client = redis.Redis(port=topo.ports["redis"], username="drfleet", password="fleet-pw-0123456789")
        with pytest.raises(redis.exceptions.ResponseError, match="NOREPLICAS"):
            client.set("k", "v")
        assert client.info("replication")["role"] == "master"
    finally:
        topo.stop()
