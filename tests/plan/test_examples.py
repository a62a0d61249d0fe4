"""Both seed plans are expressible: every table row becomes a policy or target."""

from pathlib import Path

import pytest

from drfleet.plan.loader import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_microservices_plan_encodes_every_database_and_file_row():
    plan = load_plan(EXAMPLES / "microservices.yaml")
    rows = {(d, p.name): (p.trigger.cron or p.trigger.kind, p.keep.keep_seconds, p.keep.keep_versions,
                          tuple(c.label for c in p.copies))
            for d, ds in plan.datasets.items() for p in ds.policies}
    day = 86400
    assert rows[("auth-db", "hourly")] == ("0 * * * *", day, None, ("primary-region",))
    assert rows[("auth-db", "daily")] == ("0 0 * * *", 7 * day, None, ("all-regions",))
    assert rows[("auth-db", "weekly")] == ("0 0 * * 0", 30 * day, None, ("all-regions", "offsite"))
    assert rows[("mautic-db", "daily")] == ("0 0 * * *", 7 * day, None, ("primary-region",))
    assert rows[("analytics-db", "daily")] == ("0 0 * * *", 30 * day, None, ("region-only",))
    assert rows[("user-uploads", "realtime")] == ("continuous", 90 * day, None, ("primary-region", "offsite"))
    assert rows[("configuration", "on-change")] == ("on-change", None, 10, ("all-regions", "offsite"))
    assert rows[("logs", "daily")] == ("0 0 * * *", 90 * day, None, ("home-region", "offsite"))
    assert rows[("blockchain-state", "hourly")] == ("0 * * * *", 7 * day, None, ("all-regions",))
    assert rows[("wallets", "daily")] == ("0 0 * * *", None, None, (
        "offsite:offsite-a", "offsite:offsite-b", "offsite-cold:cold-archive"))
    assert rows[("smart-contracts", "on-deployment")] == ("on-event", None, None, ("all-regions", "offsite"))
    assert plan.datasets["smart-contracts"].policies[0].trigger.event == "deployment"
    assert plan.datasets["analytics-db"].sovereign


def test_microservices_plan_objectives_and_test_schedule():
    plan = load_plan(EXAMPLES / "microservices.yaml")
    assert plan.objectives.rto == {"single-service": 300, "database": 900, "region": 3600, "catastrophic": 86400}
    assert plan.objectives.rpo == {"authentication": 300, "transaction": 300, "content": 3600, "analytics": 86400}
    assert plan.rpo_for("auth-db") == 300 and plan.rto_for("auth-db") == 900
    assert [(d.kind, d.trigger.cron) for d in plan.drills] == [
        ("restore", "0 0 * * 0"), ("failover", "0 0 1 * *"),
        ("region", "0 0 1 1,4,7,10 *"), ("full", "0 0 1 1,7 *")]
    assert plan.verification.cold_storage.cron == "0 0 1 1,4,7,10 *"


def test_plugspace_plan_encodes_full_incremental_oplog_and_on_change():
    plan = load_plan(EXAMPLES / "plugspace.yaml")
    full = plan.policy("app-files", "weekly-full")
    assert (full.trigger.cron, full.keep.keep_seconds, full.mode) == ("0 3 * * 0", 28 * 86400, "full")
    inc = plan.policy("app-files", "daily-incremental")
    assert (inc.trigger.cron, inc.keep.keep_seconds, inc.mode) == ("0 2 * * *", 30 * 86400, "incremental")
    oplog = plan.policy("mongodb", "oplog")
    assert (oplog.trigger.cron, oplog.keep.keep_seconds, oplog.mode) == ("0 */6 * * *", 7 * 86400, "oplog")
    conf = plan.policy("configuration", "on-change")
    assert (conf.trigger.kind, conf.keep.keep_seconds) == ("on-change", 90 * 86400)
    assert plan.objectives.rto == {"service": 300, "database": 900, "server": 1800, "full-disaster": 7200}
    assert plan.rpo_for("mongodb") == 6 * 3600 and plan.rpo_for("uploads") == 86400


@pytest.mark.parametrize("name", ["microservices.yaml", "plugspace.yaml"])
def test_example_plans_pass_check_on_the_command_line(name):
    from click.testing import CliRunner

    from drfleet.cli.main import main

    result = CliRunner().invoke(main, ["plan", "check", str(EXAMPLES / name)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output
