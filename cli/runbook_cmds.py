"""`drfleet runbook start|status|resume|cancel|approve|list` (runbooks; issue 7)."""

from __future__ import annotations

import json
import time

import click

from drfleet.cli.common import plan_option, reports_errors, send, use_plan


@click.group("runbook")
def runbook_group():
    """Recovery runbooks: start one, follow it, resume, cancel, approve destructive steps."""


@runbook_group.command("start")
@plan_option
@click.argument("scenario", type=click.Choice(["service-failure", "database-failure", "region-failure",
                                               "catastrophic", "database-corruption", "server-failure"]))
@click.option("--service", help="service-failure: the service (recovery.services).")
@click.option("--dataset", help="database-failure: the PostgreSQL dataset; database-corruption: the dataset.")
@click.option("--region", help="region-failure: the failed region.")
@click.option("--host", help="server-failure: the plan host that is gone.")
@click.option("--at", help="database-corruption: restore the newest good backup taken before this time.")
@click.option("--force", is_flag=True, help="database-failure / server-failure: go on even if it still answers.")
@click.option("--dry-run", is_flag=True, help="Print the exact steps and targets; touch nothing.")
@reports_errors
def start(plan_path, scenario, service, dataset, region, host, at, force, dry_run):
    """Start SCENARIO; prints the run id. Destructive steps wait for `drfleet runbook approve`."""
    use_plan(plan_path)
    from drfleet.tasks.runbooks import runbook

    canvas = runbook(scenario, service=service, dataset=dataset, region=region, host=host, at=at,
                     force=force or None)
    if dry_run:
        click.echo(f"runbook {scenario} {json.dumps(canvas.params, sort_keys=True)} (dry run, nothing sent):")
        click.echo(canvas.dry_run())
        return
    handle = send(canvas)
    click.echo(handle.run_id)
    click.echo(f"started {scenario}: follow with `drfleet runbook status {handle.run_id}`", err=True)


def _ts(value) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(float(value))) if value else "-"


@runbook_group.command("status")
@plan_option
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@reports_errors
def status(plan_path, run_id, as_json):
    """Every step of RUN_ID: status, timings, attempts, output or error; the run's RTO."""
    use_plan(plan_path)
    from drfleet.runbooks.records import RunStore
    from drfleet.runbooks.runner import run_report

    store = RunStore()
    report = run_report(store.get(run_id), store)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"run {report['run_id']}  {report['scenario']} {json.dumps(report['params'], sort_keys=True)}  "
               f"status: {report['result']}  started {_ts(report['start'])} by {report['started_by']}")
    for n, step in enumerate(report["steps"], 1):
        seconds = f"{step['seconds']:.1f}s" if step["seconds"] is not None else ""
        click.echo(f"{n:2d}. {step['name']:28s} {step['status']:17s} {_ts(step['started_at'])} {seconds:>8s}"
                   f"  {step['target']} on {step['region']}")
        if step["error"]:
            click.echo(f"      error: {step['error'].splitlines()[0]}")
        elif step["output"]:
            click.echo(f"      {json.dumps(step['output'], default=str)[:200]}")
    if report["rto_seconds"] is not None:
        click.echo(f"verified at {_ts(report['verified_at'])}: RTO {report['rto_seconds']:.1f}s")
    if report["error"]:
        click.echo(f"error: {report['error']}")


@runbook_group.command("resume")
@plan_option
@click.argument("run_id")
@reports_errors
def resume(plan_path, run_id):
    """Continue RUN_ID from its first unfinished step; completed steps are not repeated."""
    use_plan(plan_path)
    from drfleet.tasks.runbooks import resume as resume_run

    resume_run(run_id)
    click.echo(f"resumed {run_id}")


@runbook_group.command("cancel")
@plan_option
@click.argument("run_id")
@reports_errors
def cancel(plan_path, run_id):
    """Stop RUN_ID before its next step (a running step finishes first)."""
    use_plan(plan_path)
    from drfleet.runbooks.runner import cancel_run
    from drfleet.tasks.runbooks import operator

    run = cancel_run(run_id, by=operator())
    click.echo(f"run {run_id}: {run.status}")


@runbook_group.command("approve")
@plan_option
@click.argument("run_id")
@click.argument("step")
@reports_errors
def approve(plan_path, run_id, step):
    """Approve destructive STEP of RUN_ID (promotion, overwriting, deleting servers)."""
    use_plan(plan_path)
    from drfleet.runbooks.runner import approve_step
    from drfleet.tasks.runbooks import operator

    approval = approve_step(run_id, step, by=operator())
    click.echo(f"approved {step} of {run_id} as {approval['by']} (token {approval['token'][:8]})")


@runbook_group.command("list")
@plan_option
@click.option("--limit", default=20, show_default=True)
@reports_errors
def list_runs(plan_path, limit):
    """Recent runs, newest first."""
    use_plan(plan_path)
    from drfleet.runbooks.records import RunStore

    for run in RunStore().list_runs(limit):
        rto = f"RTO {run.rto_seconds:.1f}s" if run.rto_seconds is not None else ""
        click.echo(f"{run.run_id}  {run.scenario:17s} {run.status:17s} {_ts(run.created_at)}  "
                   f"{json.dumps(run.params, sort_keys=True)} {rto}")


COMMANDS: list = [runbook_group]
