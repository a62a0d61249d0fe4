"""The plan reference is generated from the plan's JSON Schema: the committed page is what the
generator writes today, every field of every model has a row with an example, and a field
added to a model appears without anyone editing the page by hand."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from drfleet.cli.plan_cmds import plan_group
from drfleet.plan.copies import parse_copy_target
from drfleet.plan.loader import plan_json_schema
from drfleet.plan.reference import (
    collect_examples,
    field_example,
    load_example_docs,
    model_order,
    plan_reference_markdown,
)
from drfleet.plan.retention import parse_retention
from drfleet.plan.triggers import parse_trigger

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _rows(markdown: str, model: str) -> dict[str, str]:
    """field -> its table row in the section of ``model``."""
    section = re.search(rf"^#+ {model}\n(.*?)(?=^#+ |\Z)", markdown, re.S | re.M).group(1)
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", section, re.M)}


def test_the_committed_reference_is_what_the_generator_writes_now():
    assert (DOCS / "plan-reference.md").read_text() == plan_reference_markdown(), \
        "docs/plan-reference.md is stale: run `drfleet plan docs --all docs`"


def test_every_field_of_every_plan_model_has_a_row_with_an_example():
    schema, page = plan_json_schema(), plan_reference_markdown()
    defs = {"Plan": schema, **schema["$defs"]}
    assert set(model_order(schema)) == set(defs)
    for model, node in defs.items():
        rows = _rows(page, model)
        assert set(rows) == set(node["properties"]), model
        for field, row in rows.items():
            example = row.rstrip(" |").rsplit("| ", 1)[-1]
            assert example.startswith(f"`{field}: "), (model, field, row)


def test_a_field_added_to_a_model_appears_in_the_reference():
    schema = plan_json_schema()
    schema["$defs"]["Policy"]["properties"]["jitter"] = {"type": "integer", "default": 0,
                                                        "description": "seconds of random delay"}
    page = plan_reference_markdown(schema=schema)
    row = _rows(page, "Policy")["jitter"]
    assert "seconds of random delay" in row and "`jitter: " in row


def test_examples_come_from_the_example_plans_where_the_schema_has_none():
    schema = plan_json_schema()
    found = collect_examples(schema, load_example_docs())
    props = schema["$defs"]["StorageLocation"]["properties"]
    assert field_example("StorageLocation", "cold_storage_class", props["cold_storage_class"], found,
                         schema["$defs"]) == ("cold_storage_class: DEEP_ARCHIVE", "examples")
    trigger = schema["$defs"]["Policy"]["properties"]["trigger"]
    assert field_example("Policy", "trigger", trigger, found, schema["$defs"])[1] == "schema"


def test_every_example_value_in_the_reference_is_accepted_by_its_parser():
    schema = plan_json_schema()
    parsers = {"trigger": parse_trigger, "keep": parse_retention, "copies": parse_copy_target}
    for field, parse in parsers.items():
        node = schema["$defs"]["Policy"]["properties"][field]
        node = node.get("items", node)
        for example in node["examples"]:
            if "NAME" not in str(example):
                parse(example)  # raises ValueError if the documented form is not accepted


def test_phrase_tables_list_the_forms_the_parsers_accept():
    page = plan_reference_markdown()
    for word in ("bi-annually", "twice a year", "every N seconds", "10 versions", "offsite-cold:NAME",
                 "offsite (multiple locations)"):
        assert word in page, word
    for written, means in re.findall(r"^\| `([^`]+)` \| `([a-z-]+)` \|$", page.split("## Phrases: `copies`")[1]
                                     .split("## Recovery")[0], re.M):
        assert parse_copy_target(written).kind == means


def test_plan_docs_prints_the_reference_and_writes_every_page(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(plan_group, ["docs"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == plan_reference_markdown()
    written = runner.invoke(plan_group, ["docs", "--all", str(tmp_path / "docs")])
    assert written.exit_code == 0, written.output
    produced = sorted(p.relative_to(tmp_path / "docs").as_posix() for p in (tmp_path / "docs").rglob("*.md"))
    assert produced == ["plan-reference.md", "recovery-checklists.md", "runbooks/catastrophic.md",
                        "runbooks/database-corruption.md", "runbooks/database-failure.md",
                        "runbooks/region-failure.md", "runbooks/server-failure.md",
                        "runbooks/service-failure.md", "settings.md"]
    for rel in produced:
        assert (tmp_path / "docs" / rel).read_text() == (DOCS / rel).read_text(), rel


def test_recovery_section_examples_are_valid_yaml_rows():
    page = plan_reference_markdown()
    rows = _rows(page, "Service")
    assert yaml.safe_load(rows["health"].rstrip(" |").rsplit("| ", 1)[-1].strip("`"))["health"][0] == "curl"
