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
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class HealthProbe(_Strict):
    """How the fleet itself checks a service (beat runs it on the region's control lane):
    exactly one of ``http``, ``tcp`` or ``command``."""

    http: str | None = Field(None, description=(
        "An http:// or https:// URL the worker GETs; healthy when it answers with a status in "
        "`expect_status` within `timeout_seconds`."))
    tcp: str | None = Field(None, description=(
        "HOST:PORT the worker connects to; healthy when the connection opens within `timeout_seconds`."))
    command: list[str] | None = Field(None, min_length=1, description=(
        "A command (argv list) run over SSH on the service's `host`; healthy when it exits 0 "
        "(`{root}` is the host's root directory)."))
    timeout_seconds: float = Field(5.0, gt=0, le=300, description="How long one check may take. Default 5.")
    interval_seconds: int = Field(30, ge=1, le=86400, description=(
        "How often beat runs the check, in seconds. Default 30."))
    expect_status: list[int] = Field([200, 204], min_length=1, description=(
        "http only: the answer statuses that count as healthy. Default [200, 204]."))

    @model_validator(mode="after")
    def _exactly_one(self) -> "HealthProbe":
        given = [k for k in ("http", "tcp", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of http, tcp or command (got {', '.join(given) or 'none'})")
        if self.http is not None:
            parts = urlsplit(self.http)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("http must be an http:// or https:// URL with a host")
            if parts.username or parts.password:
                raise ValueError("http must not carry credentials in the URL")
            try:
                parts.port
            except ValueError:
                raise ValueError("http has an invalid port") from None
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError("tcp must be HOST:PORT with a port from 1 to 65535")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http else "tcp" if self.tcp else "command"


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
    probe: HealthProbe | None = Field(None, description=(
        "How the fleet checks the service on a schedule (HTTP, TCP or a command) and exports "
        "`drfleet_service_up`; alerts and the webhook receiver start the service-failure "
        "runbook from it. Unset: the fleet runs `health` over SSH."))
    logs: list[str] | None = Field(None, description=(
        "A command (argv list) whose output shows the service's recent log, run over SSH when "
        "a restart did not help (the second seed's `pm2 logs NAME --lines 100`). Unset: no log step."))
    restart_all: list[str] | None = Field(None, description=(
        "A command (argv list) that restarts every process on the host (`pm2 restart all`), "
        "run when the host is short of memory or disk. Unset: no such step."))
    stop: list[str] | None = Field(None, description=(
        "The command (argv list) that stops the service, run before its data is restored in "
        "place (database-corruption). Unset: nothing is stopped."))
    start: list[str] | None = Field(None, description=(
        "The command (argv list) that starts the service after a restore or on a new server. "
        "Unset: `restart` is used, else nothing."))
    setup: list[list[str]] = Field([], description=(
        "Commands (argv lists) that prepare a new server for the service before configuration "
        "and data arrive (hardening, database and web server set-up). Default none."))
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
    restore_to: str | None = Field(None, description=(
        "database-corruption: where the good backup is restored (a target as in a service's "
        "`restore`: `env:VAR`, `file:PATH`, a URL without password, or a directory). Unset: "
        "the dataset's own connection."))
    applications: list[str] = Field([], description=(
        "database-corruption: the services (names under `recovery.services`) stopped before "
        "the restore and started after it. Default none."))
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
    max_lag_seconds: float = Field(60.0, gt=0, description=(
        "region-failure: the standby counts as in sync when its replay lag is at most this. Default 60."))


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
    notify: SecretRef | None = Field(None, description=(
        "Where the notification URLs are ({env: VAR} or {file: PATH}): apprise URLs separated "
        "by spaces or newlines (mailto://, slack://, json://, ...). Notified: a step waiting "
        "for approval, a run finished or failed, a drill failed, a target missed. Unset: no "
        "notifications."))
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

    Raises RecoveryConfigInvalid listing every problem (path and message): a malformed
    section, a name that refers to a region, host, service or dataset the plan does not
    have, a DNS record outside ``recovery.dns.zone`` (or a record with no ``recovery.dns``),
    and a recovery target that would move region-only data out of its region.
    """
    try:
        rec = Recovery.model_validate(plan.recovery or {})
    except ValidationError as exc:
        problems = [f"recovery.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                    for e in exc.errors()]
        raise RecoveryConfigInvalid("the plan's recovery section is invalid", problems=problems) from None
    problems = _name_problems(plan, rec) + _dns_problems(rec) + _ttl_problems(rec) + sovereignty_problems(plan, rec)
    if problems:
        raise RecoveryConfigInvalid("the plan's recovery section names things the plan does not have"
                                    if not all("sovereignty" in p for p in problems) else
                                    "the plan's recovery section would move region-only data out of its region",
                                    problems=problems)
    return rec


def _name_problems(plan: Plan, rec: Recovery) -> list[str]:
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
        if svc.probe and svc.probe.command and not svc.host:
            problems.append(f"recovery.services.{name}.probe: a command probe runs on the service's host; set host")
    for region in [*rec.clouds, *([rec.fallback_region] if rec.fallback_region else [])]:
        if region not in regions:
            problems.append(f"recovery: unknown region {region!r}")
    for ds, targets in rec.restore_targets.items():
        if ds not in plan.datasets:
            problems.append(f"recovery.restore_targets: unknown dataset {ds!r}")
        for region in targets:
            if region not in regions:
                problems.append(f"recovery.restore_targets.{ds}: unknown region {region!r}")
    for host in rec.host_roots:
        if host not in plan.hosts:
            problems.append(f"recovery.host_roots: unknown host {host!r}")
    for ds, db in rec.databases.items():
        if ds not in plan.datasets:
            problems.append(f"recovery.databases: unknown dataset {ds!r}")
        elif plan.datasets[ds].kind != "postgres" and (db.standby or db.new_standby or db.dns or db.endpoint_file):
            problems.append(f"recovery.databases.{ds}: standby promotion needs a postgres dataset "
                            f"({ds} is {plan.datasets[ds].kind}); keep only restore_to and applications")
        for host in [db.new_standby.host if db.new_standby else None,
                     db.endpoint_file.host if db.endpoint_file else None]:
            if host and host not in plan.hosts:
                problems.append(f"recovery.databases.{ds}: unknown host {host!r}")
        for svc in db.applications:
            if svc not in rec.services:
                problems.append(f"recovery.databases.{ds}.applications: unknown service {svc!r}")
    return problems


def _ttl_problems(rec: Recovery) -> list[str]:
    """TTLs the DNS provider would refuse at switch time (Cloudflare: 1 = automatic, or 60 to
    86400; 30 to 59 on Enterprise zones)."""
    if not rec.dns or rec.dns.provider != "cloudflare":
        return []
    records = [(f"services.{n}", s.dns) for n, s in rec.services.items()]
    records += [(f"databases.{n}", d.dns) for n, d in rec.databases.items()]
    return [f"recovery.{where}.dns.ttl: {problem}" for where, record in records
            if record and record.ttl and (problem := cloudflare_ttl_problem(record.ttl, rec.dns.enterprise_zone))]


def record_fqdn(name: str, zone: str) -> str | None:
    """The record's full name in ``zone`` (``www`` -> ``www.example.com``), or None when
    a dotted name lies outside the zone."""
    name, zone = name.rstrip(".").lower(), zone.rstrip(".").lower()
    if name == zone or name.endswith("." + zone):
        return name
    if "." in name:
        return None
    return f"{name}.{zone}"


def _dns_problems(rec: Recovery) -> list[str]:
    named = [(f"recovery.services.{n}.dns", s.dns) for n, s in rec.services.items() if s.dns]
    named += [(f"recovery.databases.{n}.dns", d.dns) for n, d in rec.databases.items() if d.dns]
    if not named:
        return []
    if rec.dns is None:
        return [f"{path}: a DNS record needs recovery.dns (provider, zone, credentials)" for path, _ in named]
    return [f"{path}: record {d.name!r} is not in DNS zone {rec.dns.zone!r} (write it relative, e.g. 'www', "
            f"or as NAME.{rec.dns.zone})" for path, d in named if record_fqdn(d.name, rec.dns.zone) is None]


def dataset_locations(plan: Plan, dataset: str) -> set[str]:
    """Every storage location some policy of ``dataset`` puts a copy in (its home region's
    store included)."""
    from drfleet.plan.rules import resolve_copy_target

    doc = plan.model_dump(mode="json")
    ds = plan.dataset(dataset)
    out = {n for n, loc in plan.storage.items() if not loc.offsite and loc.region == ds.region}
    for policy in ds.policies:
        for target in policy.copies:
            try:
                out.update(resolve_copy_target(doc, ds.region, target))
            except ValueError:
                continue
    return out


def survives_region_loss(plan: Plan, dataset: str) -> bool:
    """True when some copy of ``dataset`` lives outside its home region (another region's
    store, or an offsite location not under that region's jurisdiction)."""
    home = plan.dataset(dataset).region
    for name in dataset_locations(plan, dataset):
        loc = plan.storage[name]
        if loc.offsite and loc.jurisdiction != home:
            return True
        if not loc.offsite and loc.region != home:
            return True
    return False


def lost_with_region(plan: Plan, region: str) -> list[str]:
    """Datasets homed in ``region`` whose every copy is inside it: they cannot be restored
    if the region is lost (e.g. a region-only analytics database), by priority."""
    names = [n for n, ds in plan.datasets.items() if ds.region == region and not survives_region_loss(plan, n)]
    return sorted(names, key=lambda n: (plan.datasets[n].priority, n))


def sovereignty_problems(plan: Plan, rec: Recovery) -> list[str]:
    """Recovery targets that would put region-only data in another region: a region-failure
    restore target, a service in another region restoring it, or a new standby on a host
    of another region. (The catastrophic runbook leaves region-only data outside its
    fallback region out, and says so.)"""
    problems = []
    for name, ds in plan.datasets.items():
        if not ds.sovereign:
            continue
        for region in rec.restore_targets.get(name, {}):
            if region != ds.region:
                problems.append(f"recovery.restore_targets.{name}.{region}: data sovereignty: {name} is "
                                f"region-only ({ds.region}) and may not be restored in {region}")
        for svc_name, svc in rec.services.items():
            if name in svc.restore and svc.region != ds.region:
                problems.append(f"recovery.services.{svc_name}.restore.{name}: data sovereignty: {name} is "
                                f"region-only ({ds.region}); service {svc_name} runs in {svc.region}")
        db = rec.databases.get(name)
        if db and db.new_standby and db.new_standby.host in plan.hosts:
            host_region = plan.hosts[db.new_standby.host].region
            if host_region and host_region != ds.region:
                problems.append(f"recovery.databases.{name}.new_standby.host: data sovereignty: "
                                f"{db.new_standby.host} is in {host_region}, {name} is region-only ({ds.region})")
    return problems


def region_loss_notes(plan: Plan) -> list[str]:
    """One line per dataset that cannot survive the loss of its home region (every copy
    inside it), for ``drfleet plan check``."""
    return [f"{name} cannot survive the loss of {plan.dataset(name).region}: every copy is in it or under its jurisdiction"
            + (" (region-only)" if plan.dataset(name).sovereign else "")
            for region in plan.region_names for name in lost_with_region(plan, region)]
