"""Operators: the people who may approve destructive runbook steps, each enrolled with a
second factor (TOTP, RFC 6238, 30-second steps, 6 digits; pyotp). An approval names the
operator and carries a current code; the code's time step is remembered so the same code
(or an older one) is never accepted twice.

Kept in fleet state, one hash per operator (``drfleet:operator:NAME``): the TOTP secret
(shown once, at enrolment, as an otpauth:// URI for an authenticator app; never printed,
logged or audited afterwards), the rights, who enrolled them and when, the time step of the
last accepted code, the last use and what it was for. ``review`` lists them for
``drfleet access review``."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import redis

from drfleet.errors import DrfleetError
from drfleet.state.store import key, state_client

RIGHTS = {"approve": "approve destructive runbook steps (promotion, overwriting, deleting servers)"}
STEP_SECONDS = 30
ISSUER = "drfleet"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class OperatorRefused(DrfleetError):
    """An operator, a code or a right was refused; nothing was approved."""

    hint = "enrol operators with `drfleet access enroll NAME`, and give the current code of their authenticator"


class UnknownOperator(OperatorRefused):
    pass


class CodeRefused(OperatorRefused):
    pass


class RightMissing(OperatorRefused):
    pass


def _key(name: str) -> str:
    return key("operator", name)


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise OperatorRefused(f"{name!r} is not an operator name (letters, digits, . _ @ -; at most 64)")


def enroll(name: str, rights: list[str], *, by: str, replace: bool = False,
           client: redis.Redis | None = None) -> str:
    """Enrol ``name`` with a new TOTP secret and ``rights``; returns the otpauth:// URI to
    load into an authenticator (the only time the secret leaves fleet state). Refuses an
    unknown right, and an operator already enrolled unless ``replace``."""
    import pyotp

    _check_name(name)
    unknown = sorted(set(rights) - set(RIGHTS))
    if unknown:
        raise OperatorRefused(f"unknown right(s) {', '.join(unknown)} (known: {', '.join(sorted(RIGHTS))})")
    client = client or state_client()
    secret = pyotp.random_base32()
    fields = {"secret": secret, "rights": json.dumps(sorted(set(rights))), "enrolled_at": f"{time.time():.3f}",
              "enrolled_by": by, "last_step": "-1", "last_used": "", "last_action": ""}
    if replace:
        client.delete(_key(name))
    elif not client.hsetnx(_key(name), "secret", secret):
        raise OperatorRefused(f"operator {name!r} is already enrolled",
                              hint="use --replace to give them a new secret (the old one stops working)")
    client.hset(_key(name), mapping=fields)
    client.sadd(key("operators"), name)
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def revoke(name: str, *, client: redis.Redis | None = None) -> bool:
    """Remove ``name``; True when they were enrolled."""
    client = client or state_client()
    client.srem(key("operators"), name)
    return bool(client.delete(_key(name)))


def _load(name: str, client: redis.Redis) -> dict[str, str]:
    raw = client.hgetall(_key(name)) if _NAME.match(name or "") else {}
    if not raw or b"secret" not in raw:
        known = sorted(n.decode() for n in client.smembers(key("operators")))
        raise UnknownOperator(f"{name!r} is not an enrolled operator",
                              known=", ".join(known) if known else "(none enrolled)")
    return {k.decode(): v.decode() for k, v in raw.items()}


# Accept the code's time step only if it is newer than the last accepted one (atomic).
_ADVANCE = """
local last = tonumber(redis.call('HGET', KEYS[1], 'last_step') or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'last_step', ARGV[1], 'last_used', ARGV[2], 'last_action', ARGV[3])
return 1
"""


def verify(name: str, code: str | None, *, right: str, action: str, now: float | None = None,
           client: redis.Redis | None = None) -> dict[str, Any]:
    """Check that ``name`` is enrolled, holds ``right``, and that ``code`` is their current
    TOTP code (the previous or next 30-second step is allowed for clock drift) and newer
    than the last one they used; record the use (``action``). Returns the operator (without
    the secret). Raises UnknownOperator, RightMissing, CodeRefused (wrong, malformed or
    replayed); never says what the right code would have been."""
    import pyotp

    client = client or state_client()
    record = _load(name, client)
    rights = json.loads(record.get("rights") or "[]")
    if right not in rights:
        raise RightMissing(f"operator {name!r} does not hold the right {right!r}",
                           rights=", ".join(rights) or "(none)")
    code = (code or "").strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        raise CodeRefused(f"a 6-digit code from {name}'s authenticator is required")
    now = time.time() if now is None else now
    totp = pyotp.TOTP(record["secret"])
    current = int(now // STEP_SECONDS)
    matched = next((step for step in (current, current - 1, current + 1)
                    if pyotp.utils.strings_equal(totp.at(step * STEP_SECONDS), code)), None)
    if matched is None:
        raise CodeRefused(f"the code is not {name}'s current code")
    if not client.eval(_ADVANCE, 1, _key(name), str(matched), f"{now:.3f}", action):
        raise CodeRefused(f"the code was already used (a code is accepted once; wait for {name}'s next one)")
    return {"name": name, "rights": rights}


def review(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """Every enrolled operator: name, rights, enrolled at/by, last use and its action."""
    client = client or state_client()
    out = []
    for raw_name in sorted(client.smembers(key("operators"))):
        name = raw_name.decode()
        try:
            record = _load(name, client)
        except UnknownOperator:
            continue
        out.append({"operator": name, "rights": json.loads(record.get("rights") or "[]"),
                    "enrolled_at": float(record["enrolled_at"]) if record.get("enrolled_at") else None,
                    "enrolled_by": record.get("enrolled_by") or None,
                    "last_used_at": float(record["last_used"]) if record.get("last_used") else None,
                    "last_action": record.get("last_action") or None,
                    "second_factor": "totp"})
    return out
