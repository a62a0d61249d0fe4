"""Verification results: which backup was verified where, how deeply, and how it ended.

One Redis hash per dataset (``drfleet:verified:{dataset}``), field ``{backup_id}@{location}``,
value a JSON object ``{"depth", "ok", "at", "problems"}``: the latest result for that copy.
Retention reads it to keep the newest verified backup; drills and the report read it for the
newest verified recovery point. Only names, ids and problem texts are stored, never secrets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from drfleet.state.store import key, state_client


@dataclass(frozen=True)
class VerificationResult:
    dataset: str
    backup_id: str
    location: str
    depth: str
    ok: bool
    at: float
    problems: tuple[str, ...] = ()


def _hash(dataset: str) -> str:
    return key("verified", dataset)


def record_result(dataset: str, backup_id: str, location: str, *, depth: str, ok: bool,
                  problems: list[str] | tuple[str, ...] = (), at: float | None = None,
                  client: redis.Redis | None = None) -> VerificationResult:
    """Store the latest verification result of one copy of a backup; returns it."""
    result = VerificationResult(dataset, backup_id, location, depth, ok,
                                time.time() if at is None else at, tuple(problems))
    value = json.dumps({"depth": depth, "ok": ok, "at": result.at, "problems": list(problems)})
    (client or state_client()).hset(_hash(dataset), f"{backup_id}@{location}", value)
    return result


def results(dataset: str, *, client: redis.Redis | None = None) -> list[VerificationResult]:
    """Every stored result for ``dataset``, oldest verification first."""
    raw = (client or state_client()).hgetall(_hash(dataset))
    out = []
    for field, value in raw.items():
        backup_id, _, location = field.decode().partition("@")
        data = json.loads(value)
        out.append(VerificationResult(dataset, backup_id, location, data["depth"], bool(data["ok"]),
                                      float(data["at"]), tuple(data.get("problems", ()))))
    return sorted(out, key=lambda r: r.at)


def verified_backup_ids(dataset: str, *, client: redis.Redis | None = None) -> set[str]:
    """Ids of backups of ``dataset`` whose latest result in at least one location is ok."""
    return {r.backup_id for r in results(dataset, client=client) if r.ok}


def forget(dataset: str, backup_id: str, location: str, *, client: redis.Redis | None = None) -> None:
    """Drop the result of a copy that no longer exists (called by prune)."""
    (client or state_client()).hdel(_hash(dataset), f"{backup_id}@{location}")
