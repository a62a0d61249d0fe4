"""DRFLEET_HOME: where a local fleet keeps its state (default ~/.drfleet)."""

from __future__ import annotations

import os
from pathlib import Path


def drfleet_home() -> Path:
    home = Path(os.environ.get("DRFLEET_HOME") or Path.home() / ".drfleet")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
