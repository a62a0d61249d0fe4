"""drfleet.settings: every DRFLEET_* variable declared once, parsed with a clear error,
documented in docs/settings.md, and read nowhere else."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from drfleet import settings
from drfleet.settings import Limits, LimitsInvalid, SettingInvalid

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"""(?:os\.environ\.get|os\.getenv|env\.get)\(\s*["'](DRFLEET_[A-Z0-9_]+)|"""
                  r"""os\.environ\[\s*["'](DRFLEET_[A-Z0-9_]+)["']\s*\](?!\s*=[^=])|["'](DRFLEET_[A-Z0-9_]+)["']\s+in\s+os\.environ""")


def test_values_parse_and_defaults_apply():
    assert settings.STATE_WAIT_SECONDS.get({}) == 30.0
    assert settings.STATE_WAIT_SECONDS.get({"DRFLEET_STATE_WAIT_SECONDS": "2.5"}) == 2.5
    assert settings.TASK_EVENTS.get({"DRFLEET_TASK_EVENTS": "1"}) is True
    assert settings.TASK_EVENTS.get({"DRFLEET_TASK_EVENTS": "off"}) is False
    assert settings.ZSTD_LEVEL.get({}, default=3) == 3
    assert settings.BROKER_URL.get({"DRFLEET_BROKER_URL": ""}) is None  # empty counts as unset


def test_a_value_that_does_not_parse_names_the_variable_and_the_type():
    with pytest.raises(SettingInvalid) as caught:
        settings.PRUNE_THREADS.get({"DRFLEET_PRUNE_THREADS": "eight"})
    assert "DRFLEET_PRUNE_THREADS must be a whole number" in str(caught.value)
    assert caught.value.facts["value"] == "eight"


def test_a_secret_setting_never_repeats_its_value():
    assert settings.FLOWER_PASSWORD.secret
    bad = settings.Setting("DRFLEET_TEST_SECRET", int, None, "serving", "test", secret=True)
    with pytest.raises(SettingInvalid) as caught:
        bad.get({"DRFLEET_TEST_SECRET": "hunter2"})
    assert "hunter2" not in str(caught.value)


def test_limits_default_from_each_other_and_must_be_ordered():
    limits = Limits.from_env({"DRFLEET_DATA_SOFT_LIMIT": "100"})
    assert (limits.data_soft, limits.data_hard) == (100, 700)
    assert limits.visibility == max(limits.data_hard, limits.control_hard) + 3600
    with pytest.raises(LimitsInvalid, match="data lane time limits are out of order"):
        Limits.from_env({"DRFLEET_DATA_SOFT_LIMIT": "100", "DRFLEET_DATA_HARD_LIMIT": "50"})


def test_the_committed_reference_page_is_what_the_generator_writes():
    assert (ROOT / "docs" / "settings.md").read_text() == settings.reference_markdown(), \
        "docs/settings.md is stale: run `drfleet plan docs --all docs`"
    for name in settings.SETTINGS:
        assert f"`{name}`" in settings.reference_markdown()


def test_no_module_reads_a_drfleet_variable_except_the_settings_module():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    offenders = {}
    for rel in files:
        if rel.startswith(("tests/", "bench/", "tools/", "scripts/")) or rel == "drfleet/settings.py":
            continue
        path = ROOT / rel
        if path.exists():
            found = [next(filter(None, m)) for m in READ.findall(path.read_text())]
            if found:
                offenders[rel] = found
    assert offenders == {}, "read these through drfleet.settings"


def test_the_checker_finds_a_direct_read():
    assert READ.findall('x = os.environ.get("DRFLEET_HOME")')
    assert READ.findall('if "DRFLEET_HOME" in os.environ:')
    assert not READ.findall('os.environ["DRFLEET_HOME"] = str(path)')  # setting it for a child is fine
