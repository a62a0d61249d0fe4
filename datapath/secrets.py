"""Resolving the plan's secret references on the worker. Values never leave this process
in a message, a log line or an error: errors name the variable or file, not the value."""

from __future__ import annotations

import os
from pathlib import Path

from datapath.errors import SecretUnavailable
from plan.models import SecretRef


def resolve_secret(ref: SecretRef, *, what: str) -> str:
    """The secret ``ref`` points at. Raises SecretUnavailable naming ``what`` and where
    it looked when the variable is unset/empty or the file is missing/unreadable."""
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise SecretUnavailable(f"the secret for {what} is not set", environment_variable=ref.env)
        return value
    path = Path(ref.file)
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
        return resolve_secret(SecretRef(env=text[4:]), what=what)
    if text.startswith("file:"):
        return resolve_secret(SecretRef(file=text[5:]), what=what)
    return text
