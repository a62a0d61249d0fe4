"""Runbook pages and the appendix A checklists are generated from the step builders, so a
page names exactly the steps a run would take and every checklist step exists."""

from __future__ import annotations

from pathlib import Path

from drfleet.runbooks.docs import (
    CHECKLISTS,
    checklists_markdown,
    example_plan,
    generated_pages,
    runbook_page,
    steps_for,
)
from drfleet.runbooks.scenarios import SCENARIOS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_runbook_pages_are_what_the_generator_writes_now():
    for rel, text in generated_pages().items():
        assert (DOCS / rel).read_text() == text, f"docs/{rel} is stale: run `drfleet plan docs --all docs`"


def test_a_page_lists_every_step_of_its_scenario_in_order():
    for scenario in SCENARIOS:
        page = runbook_page(scenario, example_plan(scenario))
        positions = [page.index(f"| `{step.name}` | `{step.action}` |") for step in steps_for(scenario)]
        assert positions == sorted(positions), scenario


def test_the_destructive_step_says_how_to_approve_it():
    page = runbook_page("database-failure")
    assert "needs approval: `drfleet runbook approve RUN_ID promote-standby`" in page


def test_every_checklist_step_is_a_step_of_its_scenario():
    for scenario, phases in CHECKLISTS.items():
        names = {s.name for s in steps_for(scenario)}
        for items in phases.values():
            for item in items:
                assert item.step is None or item.step in names, (scenario, item)


def test_checklists_cover_the_four_scenarios_with_detection_response_recovery():
    assert set(CHECKLISTS) == set(SCENARIOS)
    for scenario in ("service-failure", "database-failure", "region-failure", "catastrophic"):
        assert list(CHECKLISTS[scenario]) == ["Detection", "Response", "Recovery"]
    for scenario in ("database-corruption", "server-failure"):   # the second seed's runbooks, step by step
        assert list(CHECKLISTS[scenario]) == ["Runbook"]
    page = checklists_markdown()
    assert page.count("- [ ] ") == sum(len(i) for p in CHECKLISTS.values() for i in p.values())
    assert "- [ ] Promote standby to primary — runbook step `promote-standby`" in page


def test_checklist_commands_name_real_drfleet_commands():
    from drfleet.cli.main import main

    for phases in CHECKLISTS.values():
        for items in phases.values():
            for item in items:
                if item.command:
                    words = item.command.split()
                    assert words[0] == "drfleet"
                    command = main.commands.get(words[1])
                    assert command is not None, item.command
                    if hasattr(command, "commands") and len(words) > 2 and not words[2].isupper():
                        assert words[2] in command.commands, item.command
