"""compose/: the two-region docker compose deployment agrees with the plan it mounts.

No Docker engine runs on these machines. `docker compose config` validates the files where
the compose plugin is installed; the structural checks below always run: every worker,
beat and Flower service against compose/plan.yaml (regions, queues, secrets, volumes),
storage locations against the MinIO services, secret files against make-secrets.sh."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from drfleet.plan.loader import load_plan

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DSN|_URI$|ACCESS_KEY|KEYRING|PRIVATE", re.I)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]*:[^/\s@]+@")


# --- reading the files the way compose does ------------------------------------------------------

def env_example() -> dict[str, str]:
    values = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value, env: dict[str, str]):
    """compose's ${VAR}, ${VAR:-default} and $$ (a literal $), recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    value = value.replace("$$", "\0")
    value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}",
                   lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    return value.replace("\0", "$")


def load_compose(name: str = "docker-compose.yml") -> dict:
    return interpolate(yaml.safe_load((COMPOSE / name).read_text()), env_example())


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def plan():
    return load_plan(COMPOSE / "plan.yaml")


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def celery_role(service: dict) -> str | None:
    argv = command_of(service)
    text = " ".join(argv)
    for role in ("worker", "beat", "flower"):
        if re.search(rf"\bcelery -A drfleet.workers {role}\b", text):
            return role
    return None


def services_by_role(compose: dict, role: str) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if celery_role(s) == role}


def secret_targets(service: dict) -> dict[str, str]:
    """target name (under /run/secrets/) -> secret source, for a service's secrets list."""
    out = {}
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            out[entry] = entry
        else:
            out[entry.get("target") or entry["source"]] = entry["source"]
    return out


def volume_targets(service: dict) -> dict[str, str]:
    out = {}
    for entry in service.get("volumes") or []:
        source, target = entry.split(":")[:2]
        out[target] = source
    return out


def plan_secret_files(plan) -> dict[str, str]:
    """Every /run/secrets/NAME the plan names -> what it is for."""
    found = {}
    for name, ref in plan.keys.items():
        if ref.file:
            found[ref.file] = f"keyring of {name}"
    for name, loc in plan.storage.items():
        for ref in (loc.access_key, loc.secret_key):
            if ref and ref.file:
                found[ref.file] = f"credentials of {name}"
    for name, ds in plan.datasets.items():
        if ds.connection and ds.connection.file:
            found[ds.connection.file] = f"connection of {name}"
    return found


def secret_name(path: str) -> str:
    assert path.startswith("/run/secrets/"), f"{path} is not a compose secret path"
    return path.removeprefix("/run/secrets/")


# --- docker compose config, where the client can -----------------------------------------------

def compose_client() -> list[str] | None:
    if shutil.which("docker"):
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("files", [["docker-compose.yml"],
                                   ["docker-compose.yml", "docker-compose.tls.yml"],
                                   ["docker-compose.yml", "docker-compose.signing.yml"],
                                   ["docker-compose.yml", "docker-compose.sentinel.yml"]])
def test_docker_compose_config_accepts_the_files(files, tmp_path):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client: the docker CLI here has no compose plugin (`docker compose` is an "
                    "unknown command) and docker-compose is not installed; the structural checks below run instead")
    project = tmp_path / "compose"
    shutil.copytree(COMPOSE, project, ignore=shutil.ignore_patterns("secrets", ".env"))
    shutil.copy(project / ".env.example", project / ".env")
    make_secrets(project)
    args = [arg for f in files for arg in ("-f", f)]
    out = subprocess.run(client + args + ["config", "--quiet"], cwd=project, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr


# --- structure: services against the plan ----------------------------------------------------

def test_the_plan_mounted_by_compose_is_valid(plan):
    assert plan.region_names == ["eu-central", "us-east"]


def test_one_worker_per_region_consuming_only_that_regions_queues(compose, plan):
    workers = services_by_role(compose, "worker")
    regions = {}
    for name, service in workers.items():
        argv = command_of(service)
        assert argv[:4] == ["celery", "-A", "drfleet.workers", "worker"], name
        assert argv.count("--region") == 1, f"{name} must name exactly one region"
        region = argv[argv.index("--region") + 1]
        assert not {"-Q", "--queues", "-X", "--exclude-queues"} & set(argv), \
            f"{name}: queues come from --region, not -Q"
        assert region not in regions, f"{name} and {regions.get(region)} both serve {region}"
        regions[region] = name
        assert name == f"worker-{region}"  # the name Prometheus scrapes
    assert sorted(regions) == sorted(plan.region_names)


def test_every_drfleet_service_runs_the_drfleet_image_with_the_plan(compose, plan):
    drfleet = {**services_by_role(compose, "worker"), **services_by_role(compose, "beat"),
               **services_by_role(compose, "flower")}
    assert len(drfleet) == len(plan.region_names) + 3
    images = {s["image"] for s in drfleet.values()}
    assert images == {env_example()["DRFLEET_IMAGE"]}
    for name, service in drfleet.items():
        assert service["build"]["dockerfile"] == "compose/Dockerfile"
        assert (COMPOSE / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        plan_path = service["environment"]["DRFLEET_PLAN"]
        mount = next(v for v in service["volumes"] if v.split(":")[1] == plan_path)
        assert mount == f"./plan.yaml:{plan_path}:ro", name
        assert service["env_file"] == [".env"]
        assert "redis_password" in secret_targets(service)
        assert service["environment"]["DRFLEET_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"


def test_each_worker_gets_the_secrets_and_data_of_its_region_only(compose, plan):
    needed_everywhere = {secret_name(path) for path, what in plan_secret_files(plan).items()
                         if not what.startswith("connection of")}
    for name, service in services_by_role(compose, "worker").items():
        argv = command_of(service)
        region = argv[argv.index("--region") + 1]
        mounted = secret_targets(service)
        assert needed_everywhere <= set(mounted), f"{name} lacks {needed_everywhere - set(mounted)}"
        for ds_name, ds in plan.datasets.items():
            if ds.connection and ds.connection.file:
                secret = secret_name(ds.connection.file)
                if ds.region == region:
                    assert secret in mounted, f"{name} needs {secret} to back up {ds_name}"
                else:
                    assert secret not in mounted, f"{name} must not hold {ds_name}'s connection ({ds.region})"
            if ds.kind == "files" and ds.region == region:
                assert ds.source.path in volume_targets(service), f"{name} must mount {ds.source.path}"
        for target, source in mounted.items():
            if target.startswith("keyring_"):
                entry = next(e for e in service["secrets"] if isinstance(e, dict) and e["source"] == source)
                assert entry.get("mode") == 0o400, f"{name}: keyring {source} must be mounted 0400"


def test_every_secret_the_plan_names_is_a_compose_secret_from_a_file(compose, plan):
    declared = compose["secrets"]
    for path, what in plan_secret_files(plan).items():
        name = secret_name(path)
        assert name in declared, f"{what}: {path} has no compose secret"
        assert declared[name]["file"] == f"./secrets/{name}"
    used = {source for s in compose["services"].values() for source in secret_targets(s).values()}
    assert set(declared) == used, f"declared but never mounted: {set(declared) - used}"


def test_storage_locations_are_the_minio_services_and_their_buckets(compose, plan):
    services = compose["services"]
    buckets_job = " ".join(command_of(services["buckets"]))
    s3_locations = {n: loc for n, loc in plan.storage.items() if loc.kind == "s3"}
    assert len(s3_locations) == len(plan.region_names) + 1  # one per region, one offsite
    for name, loc in s3_locations.items():
        host = urlsplit(loc.endpoint_url).hostname
        assert host in services, f"{name}: endpoint {loc.endpoint_url} is no compose service"
        minio = services[host]
        assert minio["image"].startswith("minio/minio")
        assert command_of(minio) == ["server", "/data"]
        mounted = secret_targets(minio)
        assert mounted["access_key"] == secret_name(loc.access_key.file)
        assert mounted["secret_key"] == secret_name(loc.secret_key.file)
        assert minio["environment"]["MINIO_ROOT_USER_FILE"] == "access_key"
        assert f"{host}:{loc.bucket}" in buckets_job, f"the buckets job does not create {loc.bucket} on {host}"
        assert any(v.endswith(":/data") for v in minio["volumes"])
    assert [n for n, loc in s3_locations.items() if loc.offsite] == ["offsite"]


def test_redis_keeps_queued_work_and_needs_the_password(compose):
    redis = compose["services"]["redis"]
    script = " ".join(command_of(redis))
    for flag in ("--appendonly yes", "--maxmemory-policy noeviction", "--aclfile /tmp/users.acl", "user default off"):
        assert flag in script
    assert "requirepass" not in script  # the password reaches redis through the ACL file, not argv
    assert secret_targets(redis) == {"redis_password": "redis_password"}
    assert urlsplit(compose["services"]["beat"]["environment"]["DRFLEET_BROKER_URL"]).hostname == "redis"


def test_two_beats_share_the_redbeat_lock(compose):
    beats = services_by_role(compose, "beat")
    assert len(beats) == 2
    for service in beats.values():
        assert service["environment"].get("DRFLEET_BEAT_LOCK") != "off"
    assert "DRFLEET_BEAT_LOCK" not in env_example()


def test_flower_takes_basic_auth_from_a_secret_not_its_argv(compose):
    flower = compose["services"]["flower"]
    script = " ".join(command_of(flower))
    assert "--basic-auth" not in script
    assert 'FLOWER_BASIC_AUTH="${DRFLEET_FLOWER_USER:-drfleet}:$(cat /run/secrets/flower_password)"' in script
    assert "flower_password" in secret_targets(flower)
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_prometheus_loads_the_alert_rules_and_scrapes_compose_services(compose):
    prometheus = compose["services"]["prometheus"]
    mounts = volume_targets(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"
    config_path = COMPOSE / "prometheus" / "prometheus.yml"
    if not config_path.exists():
        pytest.skip("compose/prometheus/prometheus.yml is not written yet (the metrics work owns it)")
    config = yaml.safe_load(config_path.read_text())
    assert "alerts.yml" in config["rule_files"]
    for job in config["scrape_configs"]:
        for target in (t for sc in job.get("static_configs", []) for t in sc["targets"]):
            assert target.split(":")[0] in compose["services"], f"{job['job_name']} scrapes unknown {target}"


def test_no_secret_in_any_environment_line_or_the_env_file(compose):
    def check(where: str, env: dict) -> None:
        for key, value in env.items():
            value = str(value)
            assert not CREDENTIALS_IN_URL.search(value), f"{where}: {key} carries credentials in a URL"
            if SECRET_NAME.search(key):
                assert key.endswith("_FILE") or value.startswith("/run/secrets/") or "/" not in value and \
                    value in ("access_key", "secret_key"), f"{where}: {key} looks like a secret value"

    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        check(name, env if isinstance(env, dict) else dict(e.split("=", 1) for e in env))
    check(".env.example", env_example())


# --- the overrides and the secrets script ---------------------------------------------------------

@pytest.mark.parametrize("override", ["docker-compose.tls.yml", "docker-compose.signing.yml"])
def test_overrides_only_touch_existing_services_and_declare_their_secrets(compose, override):
    extra = load_compose(override)
    declared = set(compose["secrets"]) | set(extra.get("secrets", {}))
    for name, service in extra["services"].items():
        assert name in compose["services"], f"{override} adds unknown service {name}"
        for source in secret_targets(service).values():
            assert source in declared
    if override.endswith("tls.yml"):
        for name in services_by_role(compose, "worker"):
            env = extra["services"][name]["environment"]
            assert env["DRFLEET_BROKER_URL"].startswith("rediss://redis:")
            assert secret_name(env["DRFLEET_REDIS_CA_FILE"]) in secret_targets(extra["services"][name])
        assert "--port 0" in " ".join(command_of(extra["services"]["redis"]))
    else:
        for name in list(services_by_role(compose, "worker")) + ["beat", "beat-standby", "flower"]:
            assert extra["services"][name]["environment"]["DRFLEET_SIGN_MESSAGES"] == "1"


def make_secrets(project: Path) -> subprocess.CompletedProcess:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = subprocess.run(["sh", str(project / "make-secrets.sh")], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    return out


def test_make_secrets_creates_every_secret_file_private_and_usable(compose, plan, tmp_path):
    from drfleet.backup_format.keyring import load_keyring

    project = tmp_path / "compose"
    shutil.copytree(COMPOSE, project, ignore=shutil.ignore_patterns("secrets", ".env"))
    make_secrets(project)
    secrets = project / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    files = {**compose["secrets"], **load_compose("docker-compose.tls.yml")["secrets"],
             **load_compose("docker-compose.signing.yml")["secrets"]}
    for name, spec in files.items():
        path = project / spec["file"]
        assert path.is_file() and path.read_text().strip(), f"make-secrets.sh did not create {spec['file']}"
        if name.startswith("keyring_") or name in ("redis_password", "orders_db_dsn", "catalog_db_uri",
                                                   "signing_key", "redis_tls_key"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    for category in plan.keys:
        assert load_keyring(category, file=secrets / f"keyring_{category}").category == category
    password = (secrets / "orders_db_password").read_text().strip()
    assert f"orders:{password}@postgres-eu-central:5432" in (secrets / "orders_db_dsn").read_text()
    before = {p: p.read_bytes() for p in secrets.rglob("*") if p.is_file()}
    again = make_secrets(project)  # safe to run twice: nothing is replaced
    assert "create" not in again.stdout
    assert {p: p.read_bytes() for p in secrets.rglob("*") if p.is_file()} == before


def test_the_image_build_keeps_local_state_and_secrets_out():
    ignored = (COMPOSE / "Dockerfile.dockerignore").read_text().split()
    for entry in (".venv", ".drfleet", "compose/secrets", "compose/.env", "tests", ".git"):
        assert entry in ignored
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert "-c requirements.lock" in dockerfile and "\nUSER drfleet" in dockerfile
    assert {"secrets/", ".env"} <= set((COMPOSE / ".gitignore").read_text().splitlines())


def test_every_worker_has_its_own_metrics_directory_and_serves_the_port_prometheus_scrapes(compose):
    scrape = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc.get("targets", [])}
    for name, service in services_by_role(compose, "worker").items():
        env = service["environment"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] in service.get("tmpfs", []), name
        assert f"{name}:{env['DRFLEET_METRICS_PORT']}" in targets, name
