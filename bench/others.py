"""restic and Borg (Debian packages) beside drfleet in the file-tree and dump benchmarks:
encrypted repositories in the benchmark's work directory, zstd on both (restic: its
``auto`` mode, zstd at its fastest level; Borg: ``zstd,LEVEL``). Each function returns
the wall time of one command, or None when the tool is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


def _env(work: Path) -> dict:
    return {**os.environ, "RESTIC_PASSWORD": "bench-only-not-a-secret", "BORG_PASSPHRASE": "bench-only-not-a-secret",
            "BORG_BASE_DIR": str(work / "borg-home"), "RESTIC_CACHE_DIR": str(work / "restic-cache"),
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}


def _run(script: str, work: Path, env: dict | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], env={**_env(work), **(env or {})},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"failed ({done.returncode}): {script}\n{done.stderr[-2000:]}")
    return time.monotonic() - started


def init(work: Path) -> dict:
    """Create both repositories (untimed); which tools are there."""
    have = {"restic": available("restic"), "borg": available("borg")}
    if have["restic"]:
        _run(f"restic -r {work}/restic-repo init -q", work)
    if have["borg"]:
        _run(f"borg init -e repokey {work}/borg-repo", work)
    return have


def restic_tree(work: Path, src: Path) -> float | None:
    if not available("restic"):
        return None
    return _run(f"restic -r {work}/restic-repo backup -q --compression auto {src}", work)


def borg_tree(work: Path, src: Path, name: str, level: int = 1) -> float | None:
    if not available("borg"):
        return None
    return _run(f"cd {src} && borg create --compression zstd,{level} {work}/borg-repo::{name} .", work)


def restic_stdin(work: Path, command: str, env: dict | None = None) -> float | None:
    if not available("restic"):
        return None
    return _run(f"{command} | restic -r {work}/restic-repo backup -q --compression auto --stdin "
                f"--stdin-filename dump.pgc", work, env)


def borg_stdin(work: Path, command: str, name: str, level: int = 1, env: dict | None = None) -> float | None:
    if not available("borg"):
        return None
    return _run(f"{command} | borg create --compression zstd,{level} {work}/borg-repo::{name} -", work, env)


def repo_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
