"""Errors raised by the data sources (``providers.datasources``).

Every class derives from ``drfleet.errors.DrfleetError``. The facts name the tool, its exit
code and the last lines of its stderr, and the host/database/path concerned; they never
hold a password: connection strings are shown through ``credentials.scrub_url`` and tool
output is scrubbed of the secret before it is kept.
"""

from __future__ import annotations

import signal
from typing import Any, Iterable

from drfleet.errors import DrfleetError


class DataSourceError(DrfleetError):
    """Base class of every error in ``providers.datasources``."""


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "failed"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


_TRANSIENT_TOOL_WORDS = ("server closed the connection", "Connection refused", "terminating connection",
                         "the database system is starting up", "the database system is shutting down",
                         "the database system is in recovery mode", "Connection reset", "timeout expired",
                         "could not receive data", "PQgetCopyData() failed", "Broken pipe",
                         "no connection to the server")
_PERMANENT_TOOL_WORDS = ("does not exist", "authentication failed", "pg_hba.conf", "permission denied",
                         "certificate verify failed", "syntax error")


class _ToolError(DataSourceError):
    """Shared shape: a tool (or an in-process stand-in for one) that failed."""

    def __init__(self, tool: str, returncode: int | None, stderr_tail: Iterable[str] = (),
                 *, message: str | None = None, hint: str | None = None, **facts: Any) -> None:
        self.tool = tool
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        super().__init__(message or f"{tool} {_describe_exit(returncode)}", hint=hint,
                         tool=tool, returncode=returncode,
                         stderr_tail=self.stderr_tail or None, **facts)


class SourceToolFailed(_ToolError):
    """The producer of a dump (pg_dump, mongodump, the tar or replication thread) failed.

    Raised by ``Producer.close()`` when the producer exited non-zero or was killed, even
    if it had already written data: a partial dump is never a backup.
    """

    hint = "the dump is incomplete and must not be kept; the stderr lines above (if any) say why"

    @property
    def transient(self) -> bool:
        """The tool lost its connection (the database restarted or went away under it),
        rather than being refused: a missing database, a refused login or a bad
        certificate need an operator, not a retry."""
        tail = " ".join(getattr(self, "stderr_tail", ()))
        return (any(word in tail for word in _TRANSIENT_TOOL_WORDS)
                and not any(word in tail for word in _PERMANENT_TOOL_WORDS))


class FileUnreadable(SourceToolFailed):
    """A file of a directory tree could not be read while it was being archived."""

    hint = "the file vanished or is unreadable; retry the backup or exclude the path"

    def __init__(self, path: str, reason: str, **facts: Any) -> None:
        super().__init__("tar (drfleet)", None, [f"{path}: {reason}"],
                         message=f"cannot archive {path}: {reason}", path=path, **facts)
        self.path, self.reason = path, reason


class RestoreFailed(_ToolError):
    """Restoring a dump into its target failed; the target may hold a partial restore."""

    hint = "the stderr lines above (if any) say why; drop the partial target before retrying"


class ToolNotInstalled(DataSourceError):
    """An external tool a data source needs is not on PATH."""

    hint = "install the tool on this worker (or put it on PATH) and retry"

    def __init__(self, tool: str, **facts: Any) -> None:
        super().__init__(f"{tool} is not installed on this worker", tool=tool, **facts)
        self.tool = tool


class InvalidSourceOptions(DataSourceError):
    """The options given to dump/restore/fingerprint are missing, unknown or inconsistent."""

    hint = "fix the data source's options in the plan"

    def __init__(self, kind: str, reason: str, **facts: Any) -> None:
        super().__init__(f"invalid {kind} options: {reason}", kind=kind, **facts)
        self.kind, self.reason = kind, reason


class UnknownDataSourceKind(DataSourceError):
    """``open_source`` was asked for a kind no module implements (the facts list the known ones)."""

    hint = "use one of the known kinds"


class UnsafeArchiveMember(DataSourceError):
    """A tar member would write outside the restore target, or is a device/special file.

    Nothing outside the target has been written when this is raised; the target itself
    may hold the members extracted before this one.
    """

    hint = "the archive is corrupt or hostile; do not restore it without inspecting it"

    def __init__(self, member: str, reason: str, **facts: Any) -> None:
        super().__init__(f"refusing archive member {member!r}: {reason}", member=member,
                         reason=reason, **facts)
        self.member, self.reason = member, reason


class FingerprintFailed(DataSourceError):
    """Computing a fingerprint failed (source unreachable, permission, bad data)."""

    hint = "check that the source is reachable with these credentials and retry"

    def __init__(self, kind: str, reason: str, **facts: Any) -> None:
        super().__init__(f"cannot fingerprint {kind} source: {reason}", kind=kind, **facts)
        self.kind, self.reason = kind, reason


def with_target_state(exc: DrfleetError, state: str, *, hint: str | None = None) -> DrfleetError:
    """``exc`` (returned, for ``raise``) now also saying what state the restore target is
    in (fact ``target_state``), and ``hint`` when given: in its message, its rendering and
    its args (what Celery's result backend keeps)."""
    exc.facts["target_state"] = state
    if hint is not None:
        exc.hint = hint
    exc.args = (exc.render(),)
    return exc
