"""The actions runbook steps perform, by name. Each is ``fn(ctx: StepContext) -> dict``:
idempotent (it looks at the real state before acting: a promoted standby is not promoted
again, a provisioned server is found by its labels, a record already pointing at the new
address is left alone) and returns a JSON-able output of names, ids and numbers (never a
secret). Raising fails the step; ``SkipStep`` records it as skipped with a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from drfleet.plan.models import Plan
from drfleet.plan.recovery import Recovery
from drfleet.runbooks.steps import StepSpec


class SkipStep(Exception):
    def __init__(self, reason: str, **output: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output


@dataclass
class StepContext:
    plan: Plan
    recovery: Recovery
    run_id: str
    spec: StepSpec
    outputs: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def p(self) -> dict[str, Any]:
        return self.spec.params

    def workdir(self) -> Path:
        """A private per-run directory on this worker (staging, known_hosts)."""
        from drfleet.paths import drfleet_home
        path = drfleet_home() / "runbooks" / self.run_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def output_of(self, step: str) -> dict[str, Any] | None:
        out = self.outputs.get(step)
        return out if isinstance(out, dict) and not out.get("skipped") else None


Action = Callable[[StepContext], dict]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    def register(fn: Action) -> Action:
        ACTIONS[name] = fn
        return fn
    return register


def _load() -> None:
    from drfleet.runbooks.actions import commands, database, dns_switch, hosts, restore, services  # noqa: F401


_load()
__all__ = ["ACTIONS", "SkipStep", "StepContext", "action"]
