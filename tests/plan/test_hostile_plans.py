"""Hostile plan files end in one clear PlanInvalid, quickly and without a traceback: alias
bombs, deep nesting, wrong shapes, binary and non-UTF-8 files, names a store would refuse,
and passwords typed into any string of the plan (never echoed)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.plan.loader import MAX_PLAN_BYTES, PlanInvalid, load_plan, load_plan_text
from tests.plan.test_broken_plans import BASE


def refused(text: str | bytes) -> PlanInvalid:
    with pytest.raises(PlanInvalid) as info:
        load_plan_text(text, source="hostile.yaml")
    return info.value


def messages(exc: PlanInvalid) -> str:
    return "\n".join(str(issue) for issue in exc.issues)


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_plan_is_refused_at_its_aliases():
    exc = refused(billion_laughs())
    assert len(exc.issues) == 1
    assert "aliases expand to more than" in exc.issues[0].message


def test_a_recursive_anchor_is_refused():
    assert "refers to itself" in messages(refused("regions: &r [*r]\n"))


def test_too_many_aliases_are_refused():
    text = "x: &x 1\ny: [" + ", ".join(["*x"] * 1500) + "]\n"
    assert "more than 1000 aliases" in messages(refused(text))


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    "regions: " + "[" * 100_000,
    "{a: " * 50_000,
    "".join(" " * i + "- x\n" + " " * i + "-\n" for i in range(60)),
], ids=["brackets", "unclosed", "braces", "block"])
def test_deep_nesting_is_refused_not_a_recursion_error(text):
    exc = refused(text)
    assert "nested more than" in messages(exc) or "not valid YAML" in messages(exc)


@pytest.mark.parametrize("text", ["regions: yes\n", "regions: 3\nstorage: [1]\ndatasets: true\n",
                                  "[1, 2]\n", "just text\n", "datasets: {x: {data_class: [1], scenario: {}}}\n",
                                  "storage: {1: {kind: s3}, a: {kind: s3}}\nkeys: {2: {}, b: {}}\n"])
def test_wrong_shapes_are_plan_problems_not_type_errors(text):
    exc = refused(text)
    assert exc.issues and all(issue.message for issue in exc.issues)


def test_a_binary_plan_file_is_refused_naming_the_byte(tmp_path: Path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    assert "not UTF-8 text" in messages(info.value) or "special characters" in messages(info.value)


def test_a_latin1_plan_file_is_refused_as_not_utf8(tmp_path: Path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(yaml.safe_dump(BASE).encode() + "description: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    assert "not UTF-8 text (byte" in messages(info.value)


def test_a_plan_larger_than_the_limit_is_refused_unread(tmp_path: Path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"# padding\n" * (MAX_PLAN_BYTES // 10 + 10))
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    assert "more than the" in messages(info.value)


def test_plan_check_reports_a_bomb_and_exits_2_without_a_traceback(tmp_path: Path):
    path = tmp_path / "plan.yaml"
    path.write_text(billion_laughs())
    result = CliRunner().invoke(main, ["plan", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert "aliases expand" in result.output and "Traceback" not in result.output


def _with(mutate) -> str:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def test_a_dataset_name_a_store_would_refuse_fails_plan_check_at_its_line():
    text = _with(lambda d: d["datasets"].update({"../../../outside/x": d["datasets"]["app-db"]}))
    exc = refused(text)
    issue = next(i for i in exc.issues if "outside" in i.path)
    assert issue.path == "datasets.../../../outside/x"
    assert issue.line == next(n for n, line in enumerate(text.splitlines(), 1) if "outside/x" in line)
    assert "invalid dataset name" in issue.message and "lowercase letters" in issue.message


@pytest.mark.parametrize("section, name, fragment", [
    ("storage", "Eu Store", "invalid storage location name"),
    ("keys", "db.v2", "invalid key category name"),
    ("hosts", "web/1", "invalid host name"),
])
def test_location_category_and_host_names_follow_the_store_rule(section, name, fragment):
    def mutate(d):
        first = next(iter(d[section].values())) if d.get(section) else {"address": "h", "key_file": "k",
                                                                          "known_hosts": "kh"}
        d.setdefault(section, {})[name] = first
    exc = refused(_with(mutate))
    assert any(i.path == f"{section}.{name}" and fragment in i.message for i in exc.issues), messages(exc)


def test_an_s3_endpoint_with_credentials_is_refused_without_echoing_them():
    exc = refused(_with(lambda d: d["storage"]["off"].update(endpoint_url="https://minio:s3cr3t-v4lue@minio.example:9000")))
    issue = next(i for i in exc.issues if i.path == "storage.off.endpoint_url")
    assert "a password in the URL" in issue.message
    assert "s3cr3t-v4lue" not in str(exc)


@pytest.mark.parametrize("target", ["postgresql://app:hunter2-pw@db/app", "host=db password=hunter2-pw dbname=app",
                                    "postgresql://app@db/app?password=hunter2-pw"])
def test_a_password_anywhere_in_the_plan_is_refused_without_echoing_it(target):
    def mutate(d):
        d["recovery"] = {"restore_targets": {"app-db": {"us": target}}}
    exc = refused(_with(mutate))
    assert [i.path for i in exc.issues] == ["recovery.restore_targets.app-db.us"]
    assert "hunter2-pw" not in str(exc)


def test_urls_and_keyword_strings_without_a_password_are_fine():
    def mutate(d):
        d["storage"]["off"]["endpoint_url"] = "https://minio.example:9000"
        d["recovery"] = {"restore_targets": {"app-db": {"us": "postgresql://app@db/app?sslmode=require"}}}
    load_plan_text(_with(mutate))
