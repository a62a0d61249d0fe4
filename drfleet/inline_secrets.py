"""Recognising a password typed where only a reference belongs, and refusing it without
repeating it.

Connections and URLs travel in task messages, results, the audit stream and logs, so
drfleet accepts them only without their secret: a database as ``env:VAR`` or
``file:PATH`` (resolved on the worker), a URL without ``user:password@``. ``find`` says
what kind of secret a text holds, ``redact`` masks it (``***``), and ``refuse`` raises
``InlineSecretRefused`` naming the argument and showing only the redacted text.

Recognised:

* a URL with a password in its user info: ``postgresql://u:pw@host/db``,
  ``redis://:pw@host``, ``https://user:secret@minio:9000``;
* a password-like parameter with a value, in a query string or a keyword connection
  string: ``?password=...``, ``&sslpassword=...``, ``host=db password=... dbname=x``,
  ``Password=...;`` (also passwd, pwd, pass, secret, token, api_key / apikey,
  access_token, secret_key, access_key_secret).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from drfleet.errors import DrfleetError

MASK = "***"

_SECRET_KEYS = ("password", "passwd", "pwd", "pass", "secret", "token", "api_key", "apikey",
                "access_token", "secret_key", "secretkey", "sslpassword", "access_key_secret",
                "client_secret", "auth_token")
# key=value where the key is one of the above, at the start, after whitespace, ?, & or ;
_PARAMETER = re.compile(
    r"(?P<lead>(?:^|[\s?&;,]))(?P<key>" + "|".join(_SECRET_KEYS) + r")(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,]+)", re.I)
# scheme://user:password@ -- user info ends at the last "@" of the authority (as urlsplit),
# the authority at the first "/", "?" or "#"
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#\s]*)")
# a password holding "/" (so the authority above ends inside it): user:pa/ss@host, unless
# what follows ":" is a port and a path (host:8080/a@b)
_URL_SLASHED = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*):"
                          r"(?P<password>(?!\d*/)[^\s@]+)@")


class InlineSecretRefused(DrfleetError):
    """An argument, option or plan value holds a password or token inline."""

    hint = ("pass the connection as env:VARIABLE or file:/run/secrets/NAME (resolved on the "
            "worker), or a URL without 'user:password@'; put the password in that variable "
            "or file, or in a PGPASSFILE / ~/.pgpass the worker reads")


def _url_passwords(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each password in a URL's user info."""
    for match in _URL.finditer(text):
        authority = match.group("authority")
        userinfo, at, _ = authority.rpartition("@")
        if at and ":" in userinfo:
            user, _, password = userinfo.partition(":")
            if password:
                start = match.start("authority") + len(user) + 1
                yield start, start + len(password)
    for match in _URL_SLASHED.finditer(text):
        if match.group("password"):
            yield match.start("password"), match.end("password")


def _parameter_values(text: str) -> Iterator[tuple[int, int, str]]:
    for match in _PARAMETER.finditer(text):
        value = match.group("value")
        if value.strip("'\""):
            yield match.start("value"), match.end("value"), match.group("key").lower()


def find(text: Any) -> str | None:
    """What kind of inline secret ``text`` holds ("a password in the URL", "a 'password='
    parameter"), or None. Never returns the secret."""
    if not isinstance(text, str) or text.startswith(("env:", "file:")):
        return None
    if next(_url_passwords(text), None) is not None:
        return "a password in the URL (user:PASSWORD@host)"
    found = next(_parameter_values(text), None)
    if found is not None:
        return f"a '{found[2]}=' parameter with a value"
    return None


def redact(text: str) -> str:
    """``text`` with every inline secret replaced by ``***``."""
    if not isinstance(text, str) or text.startswith(("env:", "file:")):
        return text
    spans = sorted({*_url_passwords(text), *((s, e) for s, e, _ in _parameter_values(text))})
    out, position = [], 0
    for start, end in spans:
        if start < position:
            start = position
        if start >= end:
            continue
        out.append(text[position:start])
        out.append(MASK)
        position = end
    out.append(text[position:])
    return "".join(out)


def refuse(value: Any, *, what: str) -> None:
    """Raise InlineSecretRefused when ``value`` holds an inline secret. The error names
    ``what`` (an option, an argument, a plan path) and shows ``value`` redacted."""
    kind = find(value)
    if kind:
        raise InlineSecretRefused(f"{what} holds {kind}; refusing to send or store it",
                                  given=redact(value))


def secrets_in(value: Any, *, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, kind) of every string holding an inline secret in ``value`` (nested
    dicts, lists and tuples; paths like ``kwargs.target`` or ``options[2]``)."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            kind = find(item)
            if kind:
                yield path, kind
        elif isinstance(item, dict):
            stack.extend((f"{path}.{key}" if path else str(key), child) for key, child in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))


def redacted(value: Any) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redacted(child) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redacted(child) for child in value)
    return value
