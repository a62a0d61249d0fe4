"""The floor plan (drfleet/__init__.py) holds: import-linter's contracts in pyproject.toml
are kept by the package as it is laid out when installed, and an import that points up a
floor, or a cycle, breaks them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import check_floors  # noqa: E402 - the script CI and developers run

ROOT = Path(__file__).resolve().parents[2]
OLD_ROOTS = ("workers", "tasks", "beat_schedule", "providers", "plan", "cli", "fleet", "state",
             "backup_format", "datapath", "pitr", "report", "runbooks")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    return check_floors.stage(tmp_path_factory.mktemp("floors"))


def test_every_contract_is_kept(staged):
    result = check_floors.lint(staged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)


def test_an_import_up_a_floor_breaks_the_floors(tmp_path):
    staged = check_floors.stage(tmp_path)
    models = staged / "drfleet" / "plan" / "models.py"
    models.write_text(models.read_text() + "\nfrom drfleet.cli import main as _upward  # noqa\n")
    result = check_floors.lint(staged)
    assert result.returncode != 0
    assert "drfleet.plan is not allowed to import drfleet.cli" in result.stdout


def test_a_cycle_between_siblings_breaks_the_contracts(tmp_path):
    staged = check_floors.stage(tmp_path)
    restore = staged / "drfleet" / "tasks" / "restore.py"
    restore.write_text(restore.read_text() + "\nfrom drfleet.tasks import backup as _cycle  # noqa\n")
    result = check_floors.lint(staged)
    assert result.returncode != 0 and "No cycles are allowed in drfleet.tasks" in result.stdout


def test_no_source_file_imports_a_package_by_its_old_top_level_name():
    """With the repository root on sys.path the old names would still import, as a second
    copy of every module; nothing may use them."""
    pattern = re.compile(r"^\s*(from|import)\s+(%s)(\.|\s)" % "|".join(OLD_ROOTS), re.M)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = [f for f in files if (ROOT / f).exists() and pattern.search((ROOT / f).read_text())]
    assert offenders == []
