"""Checks that the plan's key categories stay apart: no two categories name the same
keyring file or environment variable, and no master key appears in two keyrings (a
keyring copied and relabelled). Every keyring must also load: present, mode 0600 (group
and others have no access), and of its own category."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from drfleet.datapath.locations import keyring_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan


@dataclass
class KeyCheckReport:
    categories: dict[str, dict] = field(default_factory=dict)  # category -> {active, keys} or {error}
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_key_separation(plan: Plan) -> KeyCheckReport:
    """Load every keyring of ``plan`` and report what keeps categories from being separate.
    Never raises for a keyring problem: each one is a reported problem, naming category,
    path or variable and key ids, never material."""
    report = KeyCheckReport()
    by_place: dict[str, list[str]] = {}
    for category, ref in sorted(plan.keys.items()):
        place = f"file {os.path.realpath(ref.file)}" if ref.file else f"variable ${ref.env}"
        by_place.setdefault(place, []).append(category)
    for place, categories in by_place.items():
        if len(categories) > 1:
            report.problems.append(f"key categories {', '.join(categories)} share one keyring ({place}); "
                                   "give each category its own")
    owners: dict[str, tuple[str, str]] = {}  # sha256(material) -> (category, key id)
    for category in sorted(plan.keys):
        try:
            keyring = keyring_for(plan, category)
        except DrfleetError as exc:
            report.categories[category] = {"error": exc.message}
            report.problems.append(f"{category}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            continue
        report.categories[category] = {"active": keyring.active.id, "keys": keyring.key_ids}
        for key in keyring:
            digest = hashlib.sha256(key.material).hexdigest()
            other = owners.setdefault(digest, (category, key.id))
            if other[0] != category:
                report.problems.append(f"key {key.id} of {category} has the same material as {other[1]} of "
                                       f"{other[0]}: categories must never share a key; rotate one of them")
    return report
