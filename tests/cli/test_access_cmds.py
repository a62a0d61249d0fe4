"""Who approved, proven: operators enrolled with TOTP, approvals of waiting destructive steps
with a current code, refusals audited, `drfleet access review`."""

import json
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from tests.fixtures.fleet import write_plan


@pytest.fixture
def state(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    monkeypatch.setenv("DRFLEET_OPERATOR", "lead")
    return write_plan(tmp_path / "plan")


def cli(plan, *args, input=None):
    return CliRunner().invoke(main, [*args, "--plan", str(plan)], input=input)


def enroll(plan, name) -> pyotp.TOTP:
    out = cli(plan, "access", "enroll", name, "--json")
    assert out.exit_code == 0, out.output
    uri = json.loads(out.stdout)["otpauth_uri"]
    return pyotp.TOTP(parse_qs(urlsplit(uri).query)["secret"][0])


@pytest.fixture
def waiting_run(state):
    """A run whose destructive step ``promote`` waits for approval (``detect`` is not destructive)."""
    from drfleet.runbooks.records import RunStore
    from drfleet.runbooks.steps import StepSpec
    store = RunStore()
    run = store.create("database-failure", {"dataset": "db"},
                       [StepSpec("detect", "detect", "db", "eu-central"),
                        StepSpec("promote", "promote", "db", "eu-central", destructive=True),
                        StepSpec("repoint", "repoint", "db", "eu-central", destructive=True)], started_by="test")
    store.update_step(run.run_id, "promote", status="waiting-approval")
    return state, run.run_id, store


def audit_of(plan, action="runbook.approve"):
    out = cli(plan, "audit", "--action", action, "--json")
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_an_approval_needs_an_enrolled_operator_and_a_current_code(waiting_run):
    plan, run_id, store = waiting_run
    totp = enroll(plan, "alice")
    code = totp.now()
    out = cli(plan, "runbook", "approve", run_id, "promote", "--operator", "alice", "--code", code, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["approved_by"] == "alice"
    assert store.approval(run_id, "promote")["by"] == "alice"
    [approved] = audit_of(plan)
    assert (approved["actor"], approved["outcome"], approved["details"]["step"]) == ("alice", "approved", "promote")
    assert approved["details"]["second_factor"] == "totp"
    assert code not in json.dumps(approved)

    review = cli(plan, "access", "review", "--json")
    [row] = [json.loads(line) for line in review.stdout.splitlines()]
    assert row["operator"] == "alice" and row["rights"] == ["approve"]
    assert row["last_action"] == f"approve {run_id} promote" and row["last_used_at"]
    assert "secret" not in review.stdout and totp.secret not in review.stdout
    table = cli(plan, "access", "review")
    assert "alice" in table.stdout and "approve" in table.stdout and "never" not in table.stdout


@pytest.mark.parametrize("case", ["wrong", "replayed", "unknown", "not-waiting", "not-destructive", "no-code"])
def test_refusals_are_audited_and_approve_nothing(waiting_run, case):
    plan, run_id, store = waiting_run
    totp = enroll(plan, "alice")
    step, operator, code = "promote", "alice", totp.now()
    if case == "wrong":
        code = f"{(int(code) + 1) % 1_000_000:06d}"
    elif case == "replayed":
        first = cli(plan, "runbook", "approve", run_id, "promote", "--operator", "alice", "--code", code)
        assert first.exit_code == 0, first.output
        store.update_step(run_id, "repoint", status="waiting-approval")
        step = "repoint"  # the same code again, for another step
    elif case == "unknown":
        operator = "mallory"
    elif case == "not-waiting":
        step = "repoint"
    elif case == "not-destructive":
        step = "detect"
    elif case == "no-code":
        code = ""
    out = cli(plan, "runbook", "approve", run_id, step, "--operator", operator, "--code", code)
    assert out.exit_code == 1, out.output
    expected = {"wrong": "not alice's current code", "replayed": "already used", "unknown": "not an enrolled operator",
                "not-waiting": "not waiting for an approval", "not-destructive": "needs no approval",
                "no-code": "6-digit code"}[case]
    assert expected in out.output
    assert store.approval(run_id, step) is None
    refused = [r for r in audit_of(plan) if r["outcome"] == "refused"]
    assert [(r["actor"], r["details"]["step"]) for r in refused] == [(operator, step)]
    assert expected in refused[0]["details"]["reason"]
    if case == "unknown":
        assert "alice" in out.output     # names who is enrolled


def test_a_code_from_the_next_or_previous_step_is_accepted_once(state):
    from drfleet.state import operators
    uri = operators.enroll("bob", ["approve"], by="test")
    totp = pyotp.TOTP(parse_qs(urlsplit(uri).query)["secret"][0])
    now = 1_800_000_000.0
    code = totp.at(now + 30)
    assert operators.verify("bob", code, right="approve", action="x", now=now)["name"] == "bob"
    with pytest.raises(operators.CodeRefused, match="already used"):
        operators.verify("bob", totp.at(now), right="approve", action="x", now=now)   # older than the last
    with pytest.raises(operators.CodeRefused, match="current code"):
        operators.verify("bob", totp.at(now + 120), right="approve", action="x", now=now)


def test_enrolling_twice_needs_replace_and_an_unknown_right_is_refused(state):
    assert cli(state, "access", "enroll", "carol").exit_code == 0
    again = cli(state, "access", "enroll", "carol")
    assert again.exit_code == 1 and "already enrolled" in again.output and "--replace" in again.output
    assert cli(state, "access", "enroll", "carol", "--replace").exit_code == 0
    bad = cli(state, "access", "enroll", "dave", "--right", "root")
    assert bad.exit_code == 1 and "unknown right(s) root" in bad.output
    assert cli(state, "access", "revoke", "carol").exit_code == 0
    assert "no operators enrolled" in cli(state, "access", "review").stdout
    assert [r["details"]["operator"] for r in audit_of(state, "access.enroll")] == ["carol", "carol"]


def test_the_code_is_asked_for_hidden_and_only_for_a_step_that_waits(waiting_run):
    plan, run_id, store = waiting_run
    totp = enroll(plan, "alice")
    early = cli(plan, "runbook", "approve", run_id, "repoint", "--operator", "alice")   # no input given
    assert early.exit_code == 1 and "not waiting for an approval" in early.output
    assert "TOTP code" not in early.output
    asked = cli(plan, "runbook", "approve", run_id, "promote", "--operator", "alice", input=totp.now() + "\n")
    assert asked.exit_code == 0, asked.output
    assert "TOTP code of alice" in asked.output and totp.now() not in asked.output.split("TOTP code of alice")[1][:10]
    assert store.approval(run_id, "promote")["by"] == "alice"
