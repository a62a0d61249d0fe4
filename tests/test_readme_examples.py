"""The README's "A five-minute tour", run as written against the shipped plans: every
``drfleet ...`` line of its code block that needs no live fleet (``plan check``,
``schedule``, ``runbook start ... --dry-run``) is extracted and run through the real CLI,
with PLAN standing for each shipped plan. A README edit that breaks one of them, or drops
them all, fails here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
PLANS = ("examples/microservices.yaml", "examples/plugspace.yaml")


def tour_commands() -> list[list[str]]:
    """argv lists (without ``drfleet``) of the tour's commands that run without a fleet."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A five-minute tour", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    out = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("drfleet "):
            continue
        argv = shlex.split(line)[1:]
        offline = argv[:2] == ["plan", "check"] or argv[0] == "schedule" or (
            argv[0] == "runbook" and "--dry-run" in argv)
        if offline:
            out.append(argv)
    return out


def with_plan(argv: list[str], plan: str) -> list[str]:
    argv = [plan if a in ("PLAN", PLANS[0]) else a for a in argv]
    if argv[:2] != ["plan", "check"] and "--plan" not in argv:
        argv += ["--plan", plan]
    return argv


def test_the_tour_has_offline_commands_to_run():
    kinds = {argv[0] for argv in tour_commands()}
    assert {"plan", "schedule", "runbook"} <= kinds, tour_commands()


@pytest.mark.parametrize("argv", tour_commands(), ids=lambda a: " ".join(a[:3]))
def test_each_offline_tour_command_runs_on_the_first_plan(argv):
    result = CliRunner().invoke(main, with_plan(argv, PLANS[0]), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("argv", [a for a in tour_commands() if a[0] != "runbook"], ids=lambda a: " ".join(a[:3]))
def test_the_plan_independent_tour_commands_run_on_the_second_plan(argv):
    result = CliRunner().invoke(main, with_plan(argv, PLANS[1]), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(autouse=True)
def no_fleet_broker(monkeypatch):
    """The CLI would otherwise adopt a local fleet's broker URL left in DRFLEET_HOME (and
    keep it in os.environ); nothing here needs a broker."""
    monkeypatch.setenv("DRFLEET_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("DRFLEET_PLAN", "")

