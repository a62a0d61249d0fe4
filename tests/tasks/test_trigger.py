"""On-event backups end to end: ``drfleet trigger`` and the ``drfleet.trigger`` task sent by
another system (its own Celery app, knowing only the task name and queue) reach a real
worker; one event id takes one backup however often it is delivered."""

import re

import pytest
from celery import Celery
from click.testing import CliRunner

from drfleet.cli.main import main
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy


def datasets(*, src) -> str:
    return (dataset("contracts", policy("on-deployment", "on-event: deployment", "all versions"),
                    policy("on-audit", "on-event: audit", "all versions"),
                    policy("nightly", "daily", "7 days"), source=src)
            + dataset("site", policy("hourly", "hourly", "24 hours"), source=src))


@pytest.fixture
def fleet_plan(tmp_path):
    """Overrides the fleet fixture's plan: a dataset with on-event policies."""
    from drfleet.backup_format.keyring import create_keyring
    src = tmp_path / "contracts"
    src.mkdir()
    (src / "Token.sol").write_text("contract Token {}\n")
    path = write_plan(tmp_path / "plan", datasets=datasets(src=src))
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    return path


@pytest.fixture
def worker(fleet):
    fleet.worker("eu-central")
    return fleet


def trigger(plan, *args):
    result = CliRunner().invoke(main, ["trigger", *args, "--plan", str(plan)])
    return result


def trigger_outcomes(celery_app, output):
    """The backups a trigger task started, followed to their end: [(policy, status)]."""
    task_id = re.search(r"sent as task (\S+)", output).group(1)
    backup_ids = celery_app.AsyncResult(task_id).get(timeout=60)
    return sorted((r["policy"], r["status"]) if r["status"] == "committed" else ("-", r["status"])
                  for r in (celery_app.AsyncResult(b).get(timeout=60) for b in backup_ids))


def committed(plan_path, policy):
    from drfleet.datapath.catalog import list_backups
    from drfleet.plan.loader import load_plan
    return [r.manifest for r in list_backups(load_plan(plan_path), "contracts").backups
            if r.manifest.policy == policy]


def test_one_event_id_takes_one_backup_whoever_sends_it(worker, fleet_plan, celery_app, redis_url):
    first = trigger(fleet_plan, "contracts", "--event", "deployment", "--event-id", "deploy-42")
    assert first.exit_code == 0, first.output
    assert trigger_outcomes(celery_app, first.output) == [("on-deployment", "committed")]
    again = trigger(fleet_plan, "contracts", "--event", "deployment", "--event-id", "deploy-42")
    assert trigger_outcomes(celery_app, again.output) == [("-", "duplicate")]

    other_system = Celery("ci", broker=redis_url, backend=redis_url)
    other_system.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    sent = other_system.send_task("drfleet.trigger", kwargs={
        "dataset": "contracts", "region": "eu-central", "event": "deployment", "event_id": "deploy-42"},
        queue="eu-central.control", routing_key="eu-central.control", exchange="drfleet")
    assert [celery_app.AsyncResult(b).get(timeout=60)["status"] for b in sent.get(timeout=60)] == ["duplicate"]
    assert len(committed(fleet_plan, "on-deployment")) == 1
    assert committed(fleet_plan, "on-deployment")[0].slot == "event:deploy-42"


def test_a_new_event_id_takes_a_new_backup(worker, fleet_plan, celery_app):
    for event_id in ("deploy-1", "deploy-2"):
        out = trigger(fleet_plan, "contracts", "--event", "deployment", "--event-id", event_id)
        assert trigger_outcomes(celery_app, out.output) == [("on-deployment", "committed")]
    assert sorted(m.slot for m in committed(fleet_plan, "on-deployment")) == ["event:deploy-1", "event:deploy-2"]


def test_without_an_event_every_on_event_policy_runs(worker, fleet_plan, celery_app):
    out = trigger(fleet_plan, "contracts", "--event-id", "release-7")
    assert trigger_outcomes(celery_app, out.output) == [("on-audit", "committed"), ("on-deployment", "committed")]
    assert committed(fleet_plan, "nightly") == []


def test_triggering_what_has_no_matching_policy_is_a_clear_error(fleet_plan, celery_app):
    no_policy = trigger(fleet_plan, "site")
    assert no_policy.exit_code != 0 and "no on-event policy" in no_policy.output
    wrong_event = trigger(fleet_plan, "contracts", "--event", "deploy")
    assert wrong_event.exit_code != 0
    assert "deploy" in wrong_event.output and "deployment" in wrong_event.output
    unknown = trigger(fleet_plan, "nope")
    assert unknown.exit_code != 0 and "known:" in unknown.output
