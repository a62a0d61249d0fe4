"""Operator pages for the runbooks (docs/runbooks/SCENARIO.md) and the first seed plan's
appendix A recovery checklists (docs/recovery-checklists.md), generated so they cannot drift.

Each runbook page lists the steps ``runbooks.scenarios.build_steps`` produces for
``examples/microservices.yaml`` plus ``EXAMPLE_RECOVERY`` (the example plans carry no
``recovery:`` section, so an illustrative one lives here), with each action's docstring.
The checklists are the seed's scenarios as data (``CHECKLISTS``): every item names the
runbook step or drfleet command that performs it, or says it is the operator's job.
Raises what ``build_steps`` raises (UnknownScenario, RecoveryConfigInvalid) when the
example recovery section and the step builders disagree.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plan.loader import validate_document
from plan.models import Plan
from runbooks.scenarios import SCENARIOS, build_steps
from runbooks.steps import StepSpec

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PLAN = "examples/microservices.yaml"

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
        "ap-southeast": {"provider": "vultr", "token_env": "VULTR_API_KEY", "region": "sgp", "size": "vc2-1c-2gb", "image": "ubuntu-24.04"},
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
# the parameters each scenario page is built with (what `drfleet runbook start` takes)
EXAMPLE_PARAMS: dict[str, dict[str, str]] = {
    "service-failure": {"service": "ghost"}, "database-failure": {"dataset": "auth-db"},
    "region-failure": {"region": "eu-central"}, "catastrophic": {},
}
SEED_SCENARIO = {"service-failure": "Scenario 1: Single Service Failure", "database-failure": "Scenario 2: Database Failure",
                 "region-failure": "Scenario 3: Region Failure", "catastrophic": "Scenario 4: Catastrophic Multi-Region Failure"}


def example_plan() -> Plan:
    """examples/microservices.yaml with EXAMPLE_HOSTS and EXAMPLE_RECOVERY added."""
    doc = yaml.safe_load((REPO / EXAMPLE_PLAN).read_text())
    doc["hosts"] = {**doc.get("hosts", {}), **EXAMPLE_HOSTS}
    doc["recovery"] = EXAMPLE_RECOVERY
    return validate_document(doc, source=f"{EXAMPLE_PLAN} + runbooks/docs.py EXAMPLE_RECOVERY")


def _action_doc(action: str) -> str:
    from runbooks.actions import ACTIONS, _load
    _load()
    fn = ACTIONS.get(action)
    return " ".join((inspect.getdoc(fn) or "").split()) if fn else ""


def _start_command(scenario: str) -> str:
    args = " ".join(f"--{k} {v}" for k, v in EXAMPLE_PARAMS[scenario].items())
    return f"drfleet runbook start {scenario} {args}".rstrip()


def runbook_page(scenario: str, plan: Plan | None = None) -> str:
    """The markdown page of one scenario."""
    plan = plan or example_plan()
    steps = build_steps(plan, scenario, **EXAMPLE_PARAMS[scenario])
    start = _start_command(scenario)
    lines = [f"# Runbook: {scenario}", "",
             f"<!-- generated by `drfleet plan docs --all docs`; do not edit by hand -->", "",
             f"The seed plan's *{SEED_SCENARIO[scenario]}*. Steps as `build_steps` produces them for "
             f"`{EXAMPLE_PLAN}` with the example recovery section in `runbooks/docs.py` "
             f"(parameters: {EXAMPLE_PARAMS[scenario] or 'none'}); your plan's services, datasets and "
             "regions give your own list — print it with `--dry-run`.", "",
             "```sh", f"{start} --plan PLAN --dry-run   # the exact steps; nothing sent",
             f"{start} --plan PLAN             # prints RUN_ID",
             "drfleet runbook status RUN_ID", "```", "",
             "| # | step | action | target | runs on | condition | what it does |", "|---|---|---|---|---|---|---|"]
    for i, s in enumerate(steps, 1):
        cond = (f"only if `{s.when['step']}.{s.when['key']}` is `{s.when['equals']}`" if s.when else "")
        if s.destructive:
            cond = ("needs approval: `drfleet runbook approve RUN_ID " + s.name + "`; " + cond).rstrip("; ")
        desc = s.description and s.description[0].upper() + s.description[1:]
        desc = desc + "." if desc and desc[-1] not in ".?!" else desc
        what = " ".join(filter(None, [desc, _action_doc(s.action)])) or "—"
        lines.append(f"| {i} | `{s.name}` | `{s.action}` | {s.target} | {s.region}.{s.lane} | {cond} | "
                     f"{what.replace('|', '/')} |")
    lines += ["", "Every step is idempotent and recorded; `drfleet runbook resume RUN_ID` continues from the "
              "first unfinished step, `drfleet runbook cancel RUN_ID` stops before the next one.", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Item:
    """One checklist line: the seed's words, and what does it (a runbook ``step`` of the
    scenario, a drfleet ``command``, or neither: the operator's job)."""

    text: str
    step: str | None = None
    command: str | None = None


CHECKLISTS: dict[str, dict[str, list[Item]]] = {
    "service-failure": {
        "Detection": [Item("Monitoring alerts via Prometheus/Grafana", command="drfleet status"),
                      Item("Health check failures", step="check-health"),
                      Item("Error rate threshold exceeded")],
        "Response": [Item("Automatic restart of failed service", step="restart"),
                     Item("If restart fails, deploy new instance from image", step="provision"),
                     Item("Route traffic to healthy instance", step="route-traffic")],
        "Recovery": [Item("Investigate root cause", command="drfleet runbook status RUN_ID"),
                     Item("Apply fixes"), Item("Update service images"),
                     Item("Verify service health", step="verify")],
    },
    "database-failure": {
        "Detection": [Item("Database connectivity monitoring", step="detect"),
                      Item("Query performance degradation"),
                      Item("Replication lag alerts", command="drfleet wal lag DATASET")],
        "Response": [Item("Promote standby to primary", step="promote-standby",
                          command="drfleet runbook approve RUN_ID promote-standby"),
                     Item("Redirect application connections", step="redirect-clients"),
                     Item("Provision new standby", step="new-standby")],
        "Recovery": [Item("Restore failed database from backup if needed",
                          command="drfleet restore DATASET --at latest --to DATA_DIR"),
                     Item("Re-establish replication", command="drfleet standby create DATASET --on HOST --to DATA_DIR"),
                     Item("Verify data integrity", step="verify-integrity"),
                     Item("Return to normal operation when safe")],
    },
    "region-failure": {
        "Detection": [Item("Multiple service failures in same region", step="confirm-region-down"),
                      Item("Network connectivity issues", command="drfleet ping"),
                      Item("Provider status page alerts")],
        "Response": [Item("Activate global DNS failover", step="failover-auth"),
                     Item("Route traffic to healthy regions", step="failover-ghost"),
                     Item("Notify operations team")],
        "Recovery": [Item("Once region is available, restore services from backups",
                          command="drfleet restore BACKUP_ID --to TARGET"),
                     Item("Verify data integrity and synchronization", command="drfleet verify BACKUP_ID --depth deep"),
                     Item("Gradually return traffic to recovered region"),
                     Item("Update documentation with lessons learned", command="drfleet report")],
    },
    "catastrophic": {
        "Detection": [Item("Multiple region failures", command="drfleet status"),
                      Item("Global service degradation"), Item("External monitoring alerts")],
        "Response": [Item("Activate emergency response team"),
                     Item("Deploy emergency infrastructure in unaffected regions", step="provision-auth"),
                     Item("Restore from offsite backups", step="restore-auth-db"),
                     Item("Implement minimal viable services", step="verify-auth")],
        "Recovery": [Item("Prioritize critical services restoration", step="provision-auth"),
                     Item("Communicate status to users"),
                     Item("Gradually rebuild full infrastructure", command="drfleet runbook start region-failure --region REGION"),
                     Item("Conduct post-mortem analysis", command="drfleet report")],
    },
}


def _does(scenario: str, item: Item) -> str:
    parts = []
    if item.step:
        parts.append(f"runbook step `{item.step}` of `{_start_command(scenario)}`")
    if item.command:
        parts.append(f"`{item.command}`")
    return "; ".join(parts) or "operator (outside drfleet)"


def checklists_markdown() -> str:
    """docs/recovery-checklists.md: appendix A of the first seed plan, item by item."""
    lines = ["# Recovery checklists", "",
             "<!-- generated by `drfleet plan docs --all docs`; do not edit by hand -->", "",
             "Appendix A of the first seed plan (single service, database, region and full system "
             "recovery), from its *Disaster Recovery Procedures*. Each item says which runbook step or "
             "drfleet command performs it; step names are those of the example pages in "
             "[runbooks/](runbooks/) (in your plan, `failover-SERVICE`, `provision-SERVICE`, … carry "
             "your service names).", ""]
    for scenario in SCENARIOS:
        lines += [f"## {SEED_SCENARIO[scenario]} — [{scenario}](runbooks/{scenario}.md)", ""]
        for phase, items in CHECKLISTS[scenario].items():
            lines += [f"**{phase}**", ""]
            lines += [f"- [ ] {item.text} — {_does(scenario, item)}" for item in items]
            lines.append("")
    return "\n".join(lines)


def generated_pages() -> dict[str, str]:
    """Relative path under docs/ -> content, for every page this module generates."""
    plan = example_plan()
    pages = {f"runbooks/{s}.md": runbook_page(s, plan) for s in SCENARIOS}
    pages["recovery-checklists.md"] = checklists_markdown()
    return pages


def steps_for(scenario: str) -> list[StepSpec]:
    """The example steps of ``scenario`` (what its page shows)."""
    return build_steps(example_plan(), scenario, **EXAMPLE_PARAMS[scenario])
