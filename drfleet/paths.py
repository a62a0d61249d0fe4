"""DRFLEET_HOME: where a local fleet keeps its state (default ~/.drfleet)."""

from __future__ import annotations

from pathlib import Path

from drfleet import settings


def drfleet_home() -> Path:
    home = Path(settings.HOME.get() or Path.home() / ".drfleet")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
