"""The plan's ``recovery:`` section: what the runbooks act on.

The plan model keeps the section as a mapping; this module validates it (``recovery_config``)
so a mistake is reported with its path before any step runs. Everything here is names,
paths, commands and secret *references* ({env: NAME} / {file: PATH}), never secret values.

```yaml
recovery:
  ssh: {user: root, key_file: /etc/drfleet/ssh/id_ed25519, known_hosts: /etc/drfleet/ssh/known_hosts}
  clouds:                       # where new servers come from, per plan region
    eu-central: {provider: hetzner, token_env: HCLOUD_TOKEN, region: fsn1, size: cx22, image: ubuntu-24.04}
    us-east: {provider: local, root: /var/lib/drfleet/local-hosts}
  fallback_region: us-east      # catastrophic: build here (an unaffected provider/region)
  dns: {provider: route53, zone: example.com, access_key: {env: AWS_ACCESS_KEY_ID}, ...}
  services:
    site:
      region: eu-central
      host: web-eu-1            # plan host running it now
      instances: {us-east: web-us-1}   # healthy alternatives per region
      dns: {name: www.example.com, type: A}
      health: [sh, -c, "test -s {root}/srv/site/config.yaml"]
      restart: [systemctl, restart, site]
      config: {local: /etc/drfleet/services/site, remote: "{root}/srv/site"}
      restore: {site-db: "env:SITE_DB_URL", site-files: "host:{root}/srv/site/files"}
      critical: true
  restore_targets: {site-db: {us-east: "env:SITE_DB_US_URL"}}   # region failure
  databases:
    auth-db:
      standby: {env: AUTH_DB_STANDBY_URL}
      dns: {name: auth-db.example.com, type: A}
      new_standby: {host: db-us-1, data_dir: /var/lib/postgresql/standby, port: 5433, run_as: postgres}
```

``{root}`` in commands and remote paths is the host's root directory: empty on real hosts,
the server's own directory on ``local`` provider hosts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan, SecretRef


class RecoveryConfigInvalid(DrfleetError):
    hint = "fix the plan's recovery: section (see plan/recovery.py and docs/runbooks.md)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshLogin(_Strict):
    user: str = Field("root", description="The login user on servers the runbooks provision. Default root.")
    key_file: str = Field(description=(
        "Path of the SSH private key on the workers; its public half (`KEY_FILE.pub`) is "
        "installed on every server a runbook provisions and the key logs in there."))
    known_hosts: str = Field(description=(
        "Path of a known_hosts file on the workers. Required, but not read today: a "
        "provisioned server is checked against the host key pinned when it was created."))


class CloudSettings(BaseModel):
    """``provider`` plus that provider's settings (passed to ``open_cloud``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    provider: str = Field(description=(
        "hetzner, digitalocean, linode, vultr, or local (sshd hosts on this machine, for "
        "tests). The other keys go to that provider: `token_env` (the variable holding the "
        "API token; local: `root`), `region`, `size`, `image`; unknown keys are rejected when "
        "a server is made."))

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DnsSettings(_Strict):
    provider: Literal["route53", "cloudflare"] = Field(description=(
        "Who serves the zone: `route53` (AWS credentials from `access_key`/`secret_key`) or "
        "`cloudflare` (an API token from `token_env`)."))
    zone: str = Field(description=(
        "The DNS zone the runbooks change, e.g. example.com; a record name outside it is "
        "taken as relative to it (www -> www.example.com)."))
    zone_id: str | None = Field(None, description=(
        "The provider's id of the zone. Unset: looked up by `zone` at the first change."))
    endpoint_url: str | None = Field(None, description="route53 only: another API endpoint (tests, proxies). Unset: AWS.")
    region: str | None = Field(None, description="route53 only: the AWS region for the client. Default us-east-1.")
    access_key: SecretRef | None = Field(None, description=(
        "route53 only: where the AWS access key id is ({env: VAR} or {file: PATH}). Unset: "
        "boto3's default credential chain on the worker."))
    secret_key: SecretRef | None = Field(None, description=(
        "route53 only: where the AWS secret access key is ({env: VAR} or {file: PATH}). "
        "Unset: boto3's default credential chain on the worker."))
    token_env: str | None = Field(None, description=(
        "cloudflare only: the name of the environment variable holding the API token. "
        "Default CLOUDFLARE_API_TOKEN."))
    base_url: str | None = Field(None, description=(
        "cloudflare only: another API base URL (tests, proxies). Default "
        "https://api.cloudflare.com/client/v4."))
    enterprise_zone: bool = Field(False, description=(
        "cloudflare only: true when the zone is on Cloudflare's Enterprise plan, the only one "
        "that takes TTLs of 30 to 59 seconds. Default false."))


CLOUDFLARE_AUTOMATIC_TTL = 1


def cloudflare_ttl_problem(ttl: int, enterprise_zone: bool = False) -> str | None:
    """Why Cloudflare would refuse ``ttl`` (None when it takes it): its API accepts 1
    ("automatic") or 60 to 86400 seconds, the minimum lowered to 30 on Enterprise zones."""
    low = 30 if enterprise_zone else 60
    if ttl == CLOUDFLARE_AUTOMATIC_TTL or low <= ttl <= 86400:
        return None
    return (f"Cloudflare takes a TTL of 1 (automatic) or {low} to 86400 seconds"
            + ("" if enterprise_zone else " (30 on Enterprise zones: set recovery.dns.enterprise_zone)")
            + f", not {ttl}")


class DnsName(_Strict):
    name: str = Field(description=(
        "The record to switch, e.g. www.example.com (or www, relative to `recovery.dns.zone`). "
        "Switching it needs `recovery.dns`."))
    type: Literal["A", "AAAA", "CNAME"] = Field("A", description=(
        "The record type; the new value is the recovered host's `address`. Default A."))
    ttl: int | None = Field(None, ge=1, description=(
        "The TTL in seconds written with the new value. Unset: the record's current TTL, "
        "else 60. Resolvers may keep the old value for up to the old TTL. Cloudflare takes 1 "
        "(automatic) or 60 to 86400 (from 30 on Enterprise zones)."))


class ConfigPush(_Strict):
    local: str = Field(description=(
        "The service's configuration directory on the worker that runs the step."))
    remote: str = Field(description=(
        "Where it goes on the service's host; `{root}` is the host's root directory. It is "
        "mirrored with rsync --delete, so files there that are not in `local` are removed."))


class Service(_Strict):
    region: str = Field(description=(
        "The region (a name under `regions:`) the service runs in: the service-failure "
        "runbook runs there, and a region-failure runbook of that region moves it."))
    host: str | None = Field(None, description=(
        "The plan host (a name under `hosts:`) running the service now; health checks and "
        "restarts go there. Unset: the service is not checked when confirming a region is down."))
    instances: dict[str, str] = Field({}, description=(
        "Healthy alternatives by region: region name -> plan host already running the "
        "service there. A region failure points `dns` at the first healthy one outside the "
        "failed region. Default none: no DNS failover for this service."))
    dns: DnsName | None = Field(None, description=(
        "The DNS record clients use to reach the service; the runbooks point it at the host "
        "they recover to. Unset: no DNS step (clients must be redirected by hand)."))
    health: list[str] = Field(min_length=1, description=(
        "The health check: a command (argv list) run over SSH on the host, healthy when it "
        "exits 0; `{root}` is the host's root directory. E.g. [curl, -fsS, http://127.0.0.1:8080/health]."))
    restart: list[str] | None = Field(None, description=(
        "The command (argv list) run over SSH to restart the service when its health check "
        "fails. Unset: the runbook goes straight to redeploying on a new server."))
    config: ConfigPush | None = Field(None, description=(
        "A configuration directory pushed onto a new server before data is restored. Unset: "
        "no push (the image must carry the configuration)."))
    restore: dict[str, str] = Field({}, description=(
        "What to restore on a new server: dataset name -> target, where a target is "
        "`env:VAR` or `file:PATH` (a database connection), a URL without a password, a local "
        "directory, or `host:PATH` (restored, then mirrored onto the new server). Restored in "
        "dataset `priority` order."))
    critical: bool = Field(False, description=(
        "true puts the service first in region-failure and catastrophic runbooks (before "
        "every non-critical service). Default false."))
    priority: int = Field(100, description=(
        "Order among services of equal `critical`: lower numbers are recovered first (ties by "
        "name). Default 100."))


class NewStandby(_Strict):
    host: str = Field(description=(
        "The plan host (a name under `hosts:`) where a replacement standby is built with "
        "pg_basebackup from the promoted primary, over SSH."))
    data_dir: str = Field(description=(
        "The standby's data directory on that host (`{root}` allowed). An existing cluster "
        "there is started, not rebuilt."))
    port: int = Field(5432, ge=1, le=65535, description="The port the new standby listens on. Default 5432.")
    run_as: str = Field("postgres", description=(
        "The OS user PostgreSQL runs as; when the SSH user differs, the commands run via "
        "runuser and the data directory is chowned to it. Default postgres."))
    bin_dir: str | None = Field(None, description=(
        "The directory holding pg_basebackup and pg_ctl on the host. Unset: the newest "
        "/usr/lib/postgresql/*/bin, else the one on PATH."))
    listen: str = Field("*", description="PostgreSQL's listen_addresses for the new standby. Default '*' (all interfaces).")
    socket_dir: str | None = Field(None, description=(
        "The Unix socket directory for the new standby (`{root}` allowed). Unset: PostgreSQL's default."))


class EndpointFile(_Strict):
    host: str = Field(description="The plan host (a name under `hosts:`) the file is written on, over SSH.")
    path: str = Field(description=(
        "The file's path there (`{root}` allowed); it is replaced atomically with "
        "`HOST:PORT/DBNAME` of the new primary, for clients that read it."))


class Database(_Strict):
    standby: SecretRef | None = Field(None, description=(
        "Where the standby's connection string is ({env: VAR} or {file: PATH}); that standby "
        "is promoted with pg_promote() and becomes the primary. Unset: the standby registered "
        "with `drfleet standby create` is promoted."))
    dns: DnsName | None = Field(None, description=(
        "The DNS record clients use for the database; it is pointed at the promoted primary. "
        "Give it or `endpoint_file`, or clients must be redirected by hand."))
    endpoint_file: EndpointFile | None = Field(None, description=(
        "A file on a plan host rewritten with the new primary's address, for clients that "
        "read their database endpoint from a file."))
    new_standby: NewStandby | None = Field(None, description=(
        "Where to build a replacement standby after promotion. Unset: no new standby is "
        "built and the new primary runs without one."))


class Recovery(_Strict):
    ssh: SshLogin | None = Field(None, description=(
        "The SSH login for servers the runbooks provision. Required for any runbook that "
        "creates a server (service redeploy, catastrophic)."))
    clouds: dict[str, CloudSettings] = Field({}, description=(
        "Where new servers come from, by plan region: region name -> provider and its "
        "settings. A runbook that must create a server in a region without an entry fails."))
    fallback_region: str | None = Field(None, description=(
        "The region (a name under `regions:`) to rebuild in when everything else is gone; "
        "the catastrophic runbook needs it, with an entry under `clouds`. Region-failure "
        "runbooks also run their checks from it; unset, from the primary region (or another)."))
    dns: DnsSettings | None = Field(None, description=(
        "The DNS provider, zone and credentials every DNS switch uses. Unset: any step that "
        "switches a record fails."))
    services: dict[str, Service] = Field({}, description=(
        "The services the runbooks recover, by name (`drfleet runbook start service-failure "
        "--service NAME`)."))
    restore_targets: dict[str, dict[str, str]] = Field({}, description=(
        "For region failures: dataset name -> {region: target}. The region-failure runbook "
        "restores each dataset of the failed region into its target in the first other "
        "region listed, from copies outside the failed region. Targets as in a service's `restore`."))
    databases: dict[str, Database] = Field({}, description=(
        "Standby promotion for the database-failure runbook, by postgres dataset name "
        "(`drfleet runbook start database-failure --dataset NAME`)."))
    host_roots: dict[str, str] = Field({}, description=(
        "Plan host name -> the directory `{root}` stands for on it in commands and remote "
        "paths. Default empty string: `{root}` vanishes (real hosts)."))
    approval_poll_seconds: float = Field(5.0, gt=0, description=(
        "How often, in seconds, a destructive step waiting for `drfleet runbook approve` "
        "checks again. Default 5."))
    approval_timeout_seconds: float = Field(24 * 3600.0, gt=0, description=(
        "How long, in seconds, a destructive step waits for approval before the run fails. "
        "Default 86400 (24 hours)."))

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise RecoveryConfigInvalid(f"service {name!r} is not in the plan's recovery section",
                                        known=", ".join(sorted(self.services)) or "(none)") from None

    def database(self, name: str) -> Database:
        try:
            return self.databases[name]
        except KeyError:
            raise RecoveryConfigInvalid(f"dataset {name!r} has no entry under recovery.databases",
                                        known=", ".join(sorted(self.databases)) or "(none)",
                                        hint="add recovery.databases.NAME.standby: {env: VAR}") from None


def recovery_config(plan: Plan) -> Recovery:
    """The validated recovery section of ``plan``.

    Raises RecoveryConfigInvalid listing every problem (path and message), and when a name
    refers to a region, host or dataset the plan does not have.
    """
    try:
        rec = Recovery.model_validate(plan.recovery or {})
    except ValidationError as exc:
        problems = [f"recovery.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RecoveryConfigInvalid("the plan's recovery section is invalid", problems=problems) from None
    problems = []
    regions = set(plan.region_names)
    for name, svc in rec.services.items():
        if svc.region not in regions:
            problems.append(f"recovery.services.{name}.region: unknown region {svc.region!r}")
        for host in [svc.host, *svc.instances.values()]:
            if host and host not in plan.hosts:
                problems.append(f"recovery.services.{name}: unknown host {host!r}")
        for region in svc.instances:
            if region not in regions:
                problems.append(f"recovery.services.{name}.instances: unknown region {region!r}")
        for ds in svc.restore:
            if ds not in plan.datasets:
                problems.append(f"recovery.services.{name}.restore: unknown dataset {ds!r}")
    for region in [*rec.clouds, *([rec.fallback_region] if rec.fallback_region else [])]:
        if region not in regions:
            problems.append(f"recovery: unknown region {region!r}")
    for ds, db in rec.databases.items():
        if ds not in plan.datasets:
            problems.append(f"recovery.databases: unknown dataset {ds!r}")
        elif plan.datasets[ds].kind != "postgres":
            problems.append(f"recovery.databases.{ds}: standby promotion needs a postgres dataset")
        for host in [db.new_standby.host if db.new_standby else None,
                     db.endpoint_file.host if db.endpoint_file else None]:
            if host and host not in plan.hosts:
                problems.append(f"recovery.databases.{ds}: unknown host {host!r}")
    if rec.dns and rec.dns.provider == "cloudflare":
        records = [(f"services.{n}", s.dns) for n, s in rec.services.items()]
        records += [(f"databases.{n}", d.dns) for n, d in rec.databases.items()]
        for where, record in records:
            problem = record and record.ttl and cloudflare_ttl_problem(record.ttl, rec.dns.enterprise_zone)
            if problem:
                problems.append(f"recovery.{where}.dns.ttl: {problem}")
    if problems:
        raise RecoveryConfigInvalid("the plan's recovery section names things the plan does not have",
                                    problems=problems)
    return rec


# An illustrative recovery section (and the hosts it names) for the generated pages and the
# plan reference's examples: docs/runbooks/*.md are built from examples/microservices.yaml plus these.
_KEYS = {"key_file": "/etc/drfleet/ssh/id_ed25519", "known_hosts": "/etc/drfleet/ssh/known_hosts", "user": "drfleet"}
EXAMPLE_HOSTS: dict[str, dict[str, Any]] = {
    "auth-eu-1": {"address": "10.0.1.5", "region": "eu-central", **_KEYS},
    "auth-us-1": {"address": "10.1.1.5", "region": "us-east", **_KEYS},
    "web-us-1": {"address": "10.1.1.10", "region": "us-east", **_KEYS},
    "db-eu-2": {"address": "10.0.1.41", "region": "eu-central", **_KEYS},
}
EXAMPLE_RECOVERY: dict[str, Any] = {
    "ssh": {"user": "drfleet", "key_file": "/etc/drfleet/ssh/id_ed25519", "known_hosts": "/etc/drfleet/ssh/known_hosts"},
    "clouds": {
        "eu-central": {"provider": "hetzner", "token_env": "HCLOUD_TOKEN", "region": "fsn1", "size": "cx22", "image": "ubuntu-24.04"},
        "ap-southeast": {"provider": "vultr", "token_env": "VULTR_API_KEY", "region": "sgp", "size": "vc2-1c-2gb", "image": "2284"},
    },
    "fallback_region": "ap-southeast",
    "dns": {"provider": "cloudflare", "zone": "example.com", "token_env": "CLOUDFLARE_API_TOKEN"},
    "services": {
        "auth": {"region": "eu-central", "host": "auth-eu-1", "instances": {"us-east": "auth-us-1"},
                 "dns": {"name": "auth.example.com", "type": "A", "ttl": 60},
                 "health": ["curl", "-fsS", "http://127.0.0.1:8080/health"],
                 "restart": ["systemctl", "restart", "auth"],
                 "config": {"local": "/etc/drfleet/services/auth", "remote": "{root}/etc/auth"},
                 "restore": {"auth-db": "env:AUTH_DB_URL"}, "critical": True, "priority": 1},
        "ghost": {"region": "eu-central", "host": "web-eu-1", "instances": {"us-east": "web-us-1"},
                  "dns": {"name": "blog.example.com"},
                  "health": ["curl", "-fsS", "http://127.0.0.1:2368/"],
                  "restart": ["systemctl", "restart", "ghost"],
                  "config": {"local": "/etc/drfleet/services/ghost", "remote": "{root}/etc/ghost"},
                  "restore": {"ghost-db": "env:GHOST_DB_URL", "ghost-content": "host:{root}/var/lib/ghost/content"},
                  "priority": 2},
    },
    "restore_targets": {"auth-db": {"us-east": "env:AUTH_DB_US_URL"}, "ghost-db": {"us-east": "env:GHOST_DB_US_URL"}},
    "databases": {
        "auth-db": {"standby": {"env": "AUTH_DB_STANDBY_URL"}, "dns": {"name": "auth-db.example.com"},
                    "endpoint_file": {"host": "auth-eu-1", "path": "/etc/auth/database-endpoint"},
                    "new_standby": {"host": "db-eu-2", "data_dir": "/var/lib/postgresql/standby"}},
    },
}
