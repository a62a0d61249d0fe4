"""One hostile manifest in a store (100,000 nested brackets, or a file far larger than any
manifest) is one reported problem: `backups list`, `copies check` and `prune --dry-run`
still list, check and judge every other backup and dataset."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from drfleet.backup_format.layout import manifest_key
from drfleet.backup_format.manifest import MAX_MANIFEST_BYTES
from drfleet.cli.main import main
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.copies_check import check_copies
from tests.datapath.copy_plans import make_copy_plan, store_dir

DEEP_ID = "20200101T000000Z-0000dee9"
HUGE_ID = "20200101T000001Z-00000b16"


@pytest.fixture
def planted(tmp_path, redis_url, monkeypatch):
    """Backups of `site` and `secret` at home, plus a nested bomb and a huge sparse file
    stored as manifests of `site`."""
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    root = tmp_path / "plan"
    plan, _ = make_copy_plan(root, copies="home-region")
    good = {ds: run_backup(plan, ds, "hourly", region="eu-central")["backup_id"] for ds in ("site", "secret")}
    home = store_dir(root, "eu-central-store")
    (home / manifest_key("site", DEEP_ID)).write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with open(home / manifest_key("site", HUGE_ID), "wb") as huge:
        huge.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: large to a reader, nothing on disk
    return plan, root, good


def test_backups_list_reports_the_two_objects_and_lists_everything_else(planted):
    plan, root, good = planted
    listing = list_backups(plan)
    assert {(r.dataset, r.backup_id) for r in listing.backups} == {("site", good["site"]),
                                                                   ("secret", good["secret"])}
    problems = "\n".join(listing.problems)
    assert DEEP_ID in problems and "nested more than" in problems
    assert HUGE_ID in problems and "not read" in problems
    result = CliRunner().invoke(main, ["backups", "list", "--plan", str(root / "plan.yaml")])
    assert result.exit_code == 0, result.output
    assert good["site"] in result.output and good["secret"] in result.output
    assert DEEP_ID in result.stderr and "Traceback" not in result.output


def test_copies_check_reports_the_bad_manifests_as_damaged_and_checks_the_rest(planted):
    plan, _, good = planted
    report = check_copies(plan, repair=False)
    status = {(b.dataset, b.backup_id): {c.location: c.status for c in b.copies} for b in report.backups}
    assert status[("site", good["site"])]["eu-central-store"] == "ok"
    assert status[("secret", good["secret"])]["eu-central-store"] == "ok"
    assert status[("site", DEEP_ID)]["eu-central-store"] == "damaged"
    assert status[("site", HUGE_ID)]["eu-central-store"] == "damaged"


def test_prune_dry_run_reports_them_and_judges_every_other_backup(planted):
    plan, root, good = planted
    result = CliRunner().invoke(main, ["prune", "--dry-run", "--json", "--plan", str(root / "plan.yaml")])
    assert result.exit_code == 1, result.output  # 1: problems to report, not a crash
    doc = json.loads(result.stdout)
    [home] = [r for r in doc["locations"] if r["location"] == "eu-central-store"]
    problems = "\n".join(home["problems"])
    assert DEEP_ID in problems and HUGE_ID in problems
    # the dataset with an unreadable manifest is left alone (prune never judges an incomplete
    # view); every other dataset is judged
    assert [v["backup_id"] for v in home["verdicts"] if v["dataset"] == "secret"] == [good["secret"]]
