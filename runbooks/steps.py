"""What a runbook is made of: an ordered list of ``StepSpec`` (built by ``runbooks.scenarios``)
and, per step, a record of how it went (``drfleet.statuses.StepStatus``).

A step names an *action* (``runbooks.actions``) and its *target* (a service, a dataset, a
host); ``params`` are names, paths and references only, because they travel in the run
record and are shown by ``--dry-run`` and ``status``. ``region`` is the region whose worker
runs the step (a healthy one), ``lane`` the queue lane. ``destructive`` steps wait for an
approval (``drfleet runbook approve RUN_ID STEP``). ``when`` makes a step conditional on an
earlier step's output: ``{"step": "restart", "key": "healthy", "equals": False}``; a step
whose condition is false is recorded as skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepSpec:
    name: str
    action: str
    target: str
    region: str
    params: dict[str, Any] = field(default_factory=dict)
    destructive: bool = False
    lane: str = "control"
    when: dict[str, Any] | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepSpec":
        return cls(**data)

    def describe(self) -> str:
        """One line for ``--dry-run`` and ``status``."""
        flags = []
        if self.destructive:
            flags.append("needs approval")
        if self.when:
            flags.append(f"only if {self.when['step']}.{self.when['key']} == {self.when['equals']!r}")
        extra = f" [{'; '.join(flags)}]" if flags else ""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.name:28s} {self.action:16s} {self.target:18s} on {self.region}.{self.lane}"
                f"{' (' + params + ')' if params else ''}{extra}")
