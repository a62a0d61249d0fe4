"""Keeping connection secrets out of argv, logs and errors.

``scrub_url`` shows a connection URL with its password replaced; ``scrub_text`` removes
known secrets from tool output before it is kept; ``PrivateFile`` holds a secret for a
child process in a 0600 file inside a 0700 directory (libpq's PGPASSFILE, mongodump's
``--config``), removed by ``remove()``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"


def url_password(url: str) -> str | None:
    """The percent-decoded password of ``url``, or None when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def scrub_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; non-URLs are returned as is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.netloc or parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def scrub_text(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each non-empty secret (raw or %-encoded) masked."""
    for secret in secrets:
        if secret:
            # The encoded form first: it is the longer one and may contain the raw form.
            text = text.replace(quote(secret, safe=""), MASK).replace(secret, MASK)
    return text


class PrivateFile:
    """A file readable only by this user, holding ``content``; ``remove()`` deletes it.

    The file lives in its own 0700 temporary directory so no other user can even see its
    name. ``remove()`` is idempotent.
    """

    def __init__(self, content: str, *, name: str = "secret") -> None:
        self._dir = tempfile.mkdtemp(prefix="drfleet-secret-")
        self.path = os.path.join(self._dir, name)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "PrivateFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
