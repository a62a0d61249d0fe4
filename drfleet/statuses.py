"""Every status drfleet records, as string enums: what a backup task returned, how a drill,
a verification, a runbook run and its steps ended, and the outcome an audit record names.

They are ``StrEnum``s, so they compare equal to, and serialize as, the plain strings that
task results, Redis records and JSON reports have always held.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The ``status`` of an idempotent job task's result (``drfleet.backup``, ``drfleet.copy``)."""

    COMMITTED = "committed"                    # a new backup's manifest was written
    DUPLICATE = "duplicate"                    # another message holds this (dataset, policy, slot)
    ALREADY_SUCCEEDED = "already-succeeded"    # this job committed before; nothing done


class TaskOutcome(StrEnum):
    """The ``outcome`` of a task's audit record (and of its idempotency claim)."""

    STARTED = "started"
    RETRYING = "retrying"
    INTERRUPTED = "interrupted"                # stopped from outside (worker terminated, Redis lost); sent again
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DrillResult(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    NOT_AVAILABLE = "not-available"            # the plan has nothing this drill could run


class VerificationResult(StrEnum):
    OK = "ok"
    DAMAGED = "damaged"
    SIZE_ANOMALY = "size-anomaly"              # readable, but far smaller or larger than recent ones

    @classmethod
    def of(cls, ok: bool, *, anomaly_only: bool = False) -> "VerificationResult":
        """OK when ``ok``; else SIZE_ANOMALY when the size was all that was wrong, DAMAGED."""
        return cls.OK if ok else (cls.SIZE_ANOMALY if anomaly_only else cls.DAMAGED)


class StepStatus(StrEnum):
    """One runbook step."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting-approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """Finished for good: never run again (resume starts after it)."""
        return self in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)


class RunStatus(StrEnum):
    """A runbook run."""

    RUNNING = "running"
    WAITING = "waiting-approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
