"""`drfleet break-glass run|merge`: a recovery runbook with no broker at all, and its record
merged into the fleet once Redis is back (``runbooks.breakglass``)."""

from __future__ import annotations

import getpass
import json
import sys

import click

from drfleet.cli.common import plan_option, reports_errors, use_plan
from drfleet.cli.runbook_cmds import scenario_arguments


@click.group("break-glass")
def breakglass_group():
    """Recovery from this machine when the fleet's Redis is gone: runbooks run here, their
    record kept in the stores and merged into the fleet's audit later."""


@breakglass_group.command("run")
@plan_option
@scenario_arguments
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as JSON at the end.")
@reports_errors
def run(plan_path, scenario, service, dataset, region, host, at, force, as_json):
    """Run SCENARIO here, with no Redis: only the plan, the key files and the stores'
    credentials are needed. Each destructive step asks for approval on this terminal
    (type the step's name). Exit 0 when the run succeeded."""
    from drfleet import settings
    from drfleet.runbooks.breakglass import run_breakglass

    plan = use_plan(plan_path, need_fleet=False)
    who = settings.OPERATOR.get() or getpass.getuser()
    params = {k: v for k, v in {"service": service, "dataset": dataset, "region": region, "host": host,
                                "at": at, "force": force or None}.items() if v is not None}

    def approve(spec) -> bool:
        click.echo(f"\nstep {spec.name} ({spec.action} {spec.target or ''}) is destructive.", err=True)
        answer = click.prompt(f"type {spec.name} to approve it as {who} (anything else stops the run)",
                              default="", show_default=False, err=True)
        return answer.strip() == spec.name

    def on_step(name: str, record: dict) -> None:
        took = ""
        if record.get("started_at") and record.get("finished_at"):
            took = f" in {float(record['finished_at']) - float(record['started_at']):.2f} s"
        line = f"{record.get('status', '?'):10s} {name}{took}"
        if record.get("error"):
            line += f": {str(record['error']).splitlines()[0]}"
        click.echo(line, err=True)

    click.echo(f"break-glass {scenario} as {who}: no broker, state in memory, journal after each step", err=True)
    result = run_breakglass(plan, scenario, operator=who, approve=approve, on_step=on_step, **params)
    report = result["report"]
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        rto = f", RTO {report['rto_seconds']:.1f} s" if report.get("rto_seconds") else ""
        click.echo(f"run {report['run_id']}: {report['result']}{rto}")
        click.echo(f"journal: {result['journal']}; in stores: {', '.join(result['stored']) or 'none'}")
        for location, reason in result["not_stored"].items():
            click.echo(f"  not stored at {location}: {reason}", err=True)
        click.echo("when the fleet's Redis is back: drfleet break-glass merge", err=True)
    sys.exit(0 if report["result"] == "succeeded" else 1)


@breakglass_group.command("merge")
@plan_option
@reports_errors
def merge(plan_path):
    """Merge every break-glass run not merged yet (from DRFLEET_HOME/breakglass and the
    stores) into the fleet's run records and audit log."""
    from drfleet import settings
    from drfleet.runbooks.breakglass import merge_journals

    plan = use_plan(plan_path)
    merged = merge_journals(plan, by=settings.OPERATOR.get() or getpass.getuser())
    for item in merged:
        click.echo(f"merged {item['run_id']} from {item['source']} ({item['audit_entries']} audit entries)")
    if not merged:
        click.echo("nothing to merge")


COMMANDS: list = [breakglass_group]
