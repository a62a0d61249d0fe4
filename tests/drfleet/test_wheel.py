"""The wheel installs one top-level name, ``drfleet``, and works without the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import check_floors  # noqa: E402


def _source_copy(target: Path) -> Path:
    """The repository's files (tracked or new, not ignored) copied to ``target``: setuptools
    writes build/ and egg-info next to the sources it builds."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        source = ROOT / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    return target


def test_the_wheel_has_one_top_level_package_and_imports_on_its_own(tmp_path):
    source = _source_copy(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("drfleet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"drfleet"}
    # every module of every mapped folder is in the wheel (a sub-package missing from
    # pyproject.toml's package list would be dropped silently)
    for name, folder in check_floors.package_dirs().items():
        for source in folder.rglob("*.py"):
            rel = source.relative_to(folder)
            if name == "drfleet" and len(rel.parts) > 1:
                continue
            expected = "/".join([*name.split("."), *rel.parts])
            assert expected in names, f"{expected} is not in the wheel: add its package to pyproject.toml"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "drfleet = drfleet.cli.main:main" in (tmp_path / "site" / entry_points).read_text()

    # from the unpacked wheel alone: the Celery app, every task module and the CLI import
    probe = ("import drfleet.cli.main, drfleet.workers, drfleet.tasks.backup, drfleet.tasks.runbooks; "
             "import drfleet; print(drfleet.__file__); print(drfleet.workers.__file__)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "DRFLEET_HOME": str(tmp_path / "home"),
           "DRFLEET_PLAN": str(ROOT / "examples" / "plugspace.yaml")}
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert all(line.startswith(str(tmp_path / "site")) for line in ran.stdout.split())
