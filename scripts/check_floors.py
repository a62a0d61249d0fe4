"""Check drfleet's import contracts (pyproject.toml, ``[tool.importlinter]``).

The repository keeps one folder per floor at its top (workers/, tasks/, ...), mapped into
the ``drfleet`` package by ``[tool.setuptools.package-dir]``. import-linter reads packages
from the file system, so this stages the package as an install would lay it out (a
temporary ``drfleet/`` tree of the Python files) and runs ``lint-imports`` on it.

    python scripts/check_floors.py            # exit 0 when every contract is kept
    python scripts/check_floors.py --stage D  # stage into D and stop (for tests)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Path]:
    """``drfleet.X`` -> the folder holding it, from ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads(pyproject.read_text())
    return {name: ROOT / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def stage(target: Path) -> Path:
    """Lay the ``drfleet`` package out under ``target`` (Python files only); returns ``target``."""
    for name, folder in sorted(package_dirs().items()):
        dest = target.joinpath(*name.split("."))
        for source in folder.rglob("*.py"):
            rel = source.relative_to(folder)
            # a mapped sub-package's files are staged by its own entry
            if name == "drfleet" and len(rel.parts) > 1:
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out)
    return target


def lint(staged: Path, config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess:
    """Run lint-imports on a staged tree; the staged ``drfleet`` comes first on the path."""
    executable = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(executable), str(config), "--no-cache"], cwd=staged,
                          env={"PYTHONPATH": str(staged), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=Path, help="stage into this directory and stop")
    args = parser.parse_args()
    if args.stage:
        stage(args.stage)
        return 0
    with tempfile.TemporaryDirectory(prefix="drfleet-floors-") as tmp:
        result = lint(stage(Path(tmp)))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
