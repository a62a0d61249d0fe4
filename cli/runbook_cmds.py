"""`drfleet runbook start|status|resume|cancel|approve|list` (runbooks; issue 7)."""

from __future__ import annotations

import json
import time

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, require_state, send, use_plan


@click.group("runbook")
def runbook_group():
    """Recovery runbooks: start one, follow it, resume, cancel, approve destructive steps."""


SCENARIOS = ["service-failure", "database-failure", "region-failure", "catastrophic", "database-corruption",
             "server-failure"]


def scenario_arguments(command):
    """SCENARIO and its parameters, for every command that starts a runbook."""
    for decorator in reversed([
            click.argument("scenario", type=click.Choice(SCENARIOS)),
            click.option("--service", help="service-failure: the service (recovery.services)."),
            click.option("--dataset",
                         help="database-failure: the PostgreSQL dataset; database-corruption: the dataset."),
            click.option("--region", help="region-failure: the failed region."),
            click.option("--host", help="server-failure: the plan host that is gone."),
            click.option("--at",
                         help="database-corruption: restore the newest good backup taken before this time."),
            click.option("--force", is_flag=True,
                         help="database-failure / server-failure: go on even if it still answers.")]):
        command = decorator(command)
    return command


@runbook_group.command("start")
@plan_option
@scenario_arguments
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
    output.done({"run_id": handle.run_id, "scenario": scenario}, handle.run_id)
    click.echo(f"started {scenario}: follow with `drfleet runbook status {handle.run_id}`", err=True)


@runbook_group.command("status")
@plan_option
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--follow", is_flag=True, help="Show progress (steps done of all, rate, ETA) until the run ends "
                                              "or waits for an approval.")
@click.option("--timeout", default=6 * 3600.0, show_default=True, help="With --follow: give up after this long.")
@reports_errors
def status(plan_path, run_id, as_json, follow=False, timeout=6 * 3600.0):
    """Every step of RUN_ID: status, timings, attempts, output or error; the run's RTO."""
    use_plan(plan_path)
    require_state()
    from drfleet.runbooks.records import RunStore
    from drfleet.runbooks.runner import run_report

    store = RunStore()
    report = run_report(store.get(run_id), store)
    if follow:
        report = _follow(store, run_id, report, timeout)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    output.note(f"run {report['run_id']}  {report['scenario']} {json.dumps(report['params'], sort_keys=True)}  "
                f"status: {report['result']}  started {output.timestamp(report['start'])} by {report['started_by']}")

    def render(step):
        detail = step["error"] or (json.dumps(step["output"], default=str, sort_keys=True) if step["output"] else "")
        return (step["name"], step["status"] or "pending", output.timestamp(step["started_at"]),
                output.duration(step["seconds"]), f"{step['target']} on {step['region']}", detail)

    output.table(["step", "status", "started", "took", "target", "output or error"],
                 [render(step) for step in report["steps"]])
    if report["rto_seconds"] is not None:
        click.echo(f"verified at {output.timestamp(report['verified_at'])}: RTO {output.duration(report['rto_seconds'])}")
    if report["error"]:
        click.echo(f"error: {report['error']}")


_ENDED = ("succeeded", "failed", "cancelled", "waiting-approval")


def _follow(store, run_id: str, report: dict, timeout: float) -> dict:
    """Progress of a run's steps until it ends or waits for an approval; the last report."""
    from drfleet.runbooks.runner import run_report

    deadline = time.monotonic() + timeout
    total = len(report["steps"])
    with output.Progress(f"runbook {report['scenario']}", total=total, unit="steps", every=2.0) as progress:
        while True:
            done = sum(1 for s in report["steps"] if s["status"] in ("succeeded", "skipped"))
            current = next((s["name"] for s in report["steps"] if s["status"] in ("running", "waiting-approval",
                                                                                  "failed")), "")
            progress.update(done, step=f"{report['result']}{': ' + current if current else ''}")
            if report["result"] in _ENDED or time.monotonic() > deadline:
                return report
            time.sleep(0.5)
            report = run_report(store.get(run_id), store)


@runbook_group.command("resume")
@plan_option
@click.argument("run_id")
@reports_errors
def resume(plan_path, run_id):
    """Continue RUN_ID from its first unfinished step; completed steps are not repeated."""
    use_plan(plan_path)
    require_state()
    from drfleet.tasks.runbooks import resume as resume_run

    resume_run(run_id)
    output.done({"run_id": run_id, "status": "resumed"}, f"resumed {run_id}")


@runbook_group.command("cancel")
@plan_option
@click.argument("run_id")
@reports_errors
def cancel(plan_path, run_id):
    """Stop RUN_ID before its next step (a running step finishes first)."""
    use_plan(plan_path)
    require_state()
    from drfleet.runbooks.runner import cancel_run
    from drfleet.tasks.runbooks import operator

    run = cancel_run(run_id, by=operator())
    output.done({"run_id": run_id, "status": run.status}, f"run {run_id}: {run.status}")


@runbook_group.command("approve")
@plan_option
@click.argument("run_id")
@click.argument("step")
@click.option("--operator", "operator_name", help="The enrolled operator approving (default: $DRFLEET_OPERATOR, "
                                                  "else the OS user).")
@click.option("--code", help="The operator's current 6-digit TOTP code (asked for, hidden, when not given).")
@reports_errors
def approve(plan_path, run_id, step, operator_name, code):
    """Approve destructive STEP of RUN_ID (promotion, overwriting, deleting servers) as an
    enrolled operator with their current TOTP code. The step must be waiting for approval;
    a wrong, replayed or missing code, an unknown operator or a step that is not waiting is
    refused and audited, and nothing runs."""
    use_plan(plan_path)
    require_state()
    from drfleet.runbooks.runner import approve_step, check_approvable
    from drfleet.tasks.runbooks import operator

    who = operator_name or operator()
    if code is None:
        check_approvable(run_id, step, by=who)  # refuse before asking for a code
        code = click.prompt(f"TOTP code of {who}", hide_input=True, err=True, default="", show_default=False)
    approval = approve_step(run_id, step, by=who, code=code)
    output.result({"run_id": run_id, "step": step, "approved_by": approval["by"], "second_factor": "totp",
                   "approved_at": approval["at"], "token": approval["token"][:8]})


@runbook_group.command("list")
@plan_option
@click.option("--limit", default=20, show_default=True)
@reports_errors
def list_runs(plan_path, limit):
    """Recent runs, newest first."""
    use_plan(plan_path)
    require_state()
    from drfleet.runbooks.records import RunStore

    runs = [{"run_id": run.run_id, "scenario": run.scenario, "status": run.status, "created_at": run.created_at,
             "params": run.params, "rto_seconds": run.rto_seconds} for run in RunStore().list_runs(limit)]
    output.rows(runs, headers=["run", "scenario", "status", "started", "params", "RTO"], empty="no runbook runs",
                render=lambda r: (r["run_id"], r["scenario"], r["status"], output.timestamp(r["created_at"]),
                                  json.dumps(r["params"], sort_keys=True), output.duration(r["rto_seconds"])))


COMMANDS: list = [runbook_group]
