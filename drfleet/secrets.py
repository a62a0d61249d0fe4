"""Resolving the plan's secret references on the worker. Values never leave this process
in a message, a log line or an error: errors name the variable or file, not the value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from drfleet.errors import DrfleetError


class SecretUnavailable(DrfleetError):
    hint = "set the environment variable or create the secret file the plan names, on the worker"


class SecretReference(Protocol):
    """What the plan's ``{env: NAME}`` / ``{file: PATH}`` references look like."""

    env: str | None
    file: str | None


def resolve_secret(ref: SecretReference, *, what: str) -> str:
    """The secret ``ref`` points at. Raises SecretUnavailable naming ``what`` and where
    it looked when the variable is unset/empty or the file is missing/unreadable."""
    if ref.env:
        return secret_from_env(ref.env, what=what)
    return secret_from_file(ref.file, what=what)


def secret_from_env(name: str, *, what: str) -> str:
    """The value of environment variable ``name``; raises SecretUnavailable when unset or empty."""
    value = os.environ.get(name)
    if not value:
        raise SecretUnavailable(f"the secret for {what} is not set", environment_variable=name)
    return value


def secret_from_file(file: str | os.PathLike, *, what: str) -> str:
    """The stripped content of ``file``; raises SecretUnavailable when it is missing,
    unreadable or empty."""
    path = Path(file)
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SecretUnavailable(f"the secret file for {what} cannot be read ({exc.strerror})",
                                file=str(path)) from None
    if not value:
        raise SecretUnavailable(f"the secret file for {what} is empty", file=str(path))
    return value


def parse_target(text: str, *, what: str) -> str:
    """A restore target given on the command line: ``env:VAR`` and ``file:PATH`` are
    resolved here (on the worker); anything else is used as is."""
    if text.startswith("env:"):
        return secret_from_env(text[4:], what=what)
    if text.startswith("file:"):
        return secret_from_file(text[5:], what=what)
    return text
