"""Errors raised by drfleet's SSH, SFTP and rsync provider.

Every error carries the facts an operator needs to locate the problem (host, port, user,
host key fingerprints, the remote command, its exit status, the last lines of its stderr)
and never key material or passphrases: key files are named by path only.

``transient`` says whether retrying the same operation later may succeed (the host was
down, the connection dropped); ``with_retries`` in ``providers.ssh.rsync`` relies on it.
"""

from __future__ import annotations

import shlex
from typing import Any

from drfleet.errors import DrfleetError


def _rebuild(cls: type, state: dict[str, Any]) -> "SshError":
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class SshError(DrfleetError):
    """Base class of every error of the SSH provider. Survives pickling (task results)."""


    def __reduce__(self):
        return (_rebuild, (type(self), dict(self.__dict__)))


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH records a host under: ``host`` for port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _short_key_type(key_type: str) -> str:
    """``ssh-ed25519`` -> ``ed25519``, ``ecdsa-sha2-nistp256`` -> ``ecdsa`` (ssh-keyscan -t)."""
    return key_type.removeprefix("ssh-").split("-")[0]


class HostKeyRejected(SshError):
    """The server's host key was not accepted; nothing was sent to the server."""


class UnknownHostKey(HostKeyRejected):
    """The known_hosts file has no key for this host and port."""

    def __init__(self, host: str, port: int, key_type: str, fingerprint: str, *,
                 known_hosts_file: str | None = None) -> None:
        self.host, self.port, self.key_type, self.fingerprint = host, port, key_type, fingerprint
        short_type = _short_key_type(key_type)
        keyscan = f"ssh-keyscan -p {port} -t {short_type} {host}"
        target = shlex.quote(known_hosts_file) if known_hosts_file else "KNOWN_HOSTS"
        super().__init__(
            f"refusing to connect: {_endpoint(host, port)} presented a host key that is not "
            f"in known_hosts ({key_type} {fingerprint})",
            host=host, port=port, key_type=key_type, fingerprint=fingerprint,
            known_hosts_file=known_hosts_file,
            hint=(f"verify {fingerprint} out of band (on the host: `ssh-keygen -lf "
                  f"/etc/ssh/ssh_host_{short_type}_key.pub`), "
                  f"then add it: `{keyscan} >> {target}` and check that "
                  f"`ssh-keygen -lf {target}` shows the same fingerprint"),
        )


class HostKeyChanged(HostKeyRejected):
    """The host presented a key that differs from the one recorded in known_hosts."""

    def __init__(self, host: str, port: int, expected_fingerprint: str,
                 presented_fingerprint: str, *, known_hosts_file: str | None = None,
                 presented_key_type: str | None = None,
                 expected_key_types: list[str] | None = None) -> None:
        self.host, self.port = host, port
        self.expected_fingerprint = expected_fingerprint
        self.presented_fingerprint = presented_fingerprint
        super().__init__(
            f"refusing to connect: the host key of {_endpoint(host, port)} has CHANGED "
            "(possible man-in-the-middle, or the host was reinstalled)",
            host=host, port=port, expected_fingerprint=expected_fingerprint,
            presented_fingerprint=presented_fingerprint,
            expected_key_types=", ".join(expected_key_types) if expected_key_types else None,
            presented_key_type=presented_key_type, known_hosts_file=known_hosts_file,
            hint=("do not retry blindly: confirm out of band why the key changed; only then "
                  f"remove the old entry (`ssh-keygen -R '{known_hosts_name(host, port)}' -f "
                  f"{shlex.quote(known_hosts_file) if known_hosts_file else 'KNOWN_HOSTS'}`) "
                  "and add the verified new key"),
        )


class HostKeyRevoked(HostKeyRejected):
    """The host presented a key marked ``@revoked`` in known_hosts."""

    def __init__(self, host: str, port: int, fingerprint: str, *,
                 known_hosts_file: str | None = None) -> None:
        self.host, self.port, self.fingerprint = host, port, fingerprint
        super().__init__(
            f"refusing to connect: {_endpoint(host, port)} presented a REVOKED host key",
            host=host, port=port, fingerprint=fingerprint, known_hosts_file=known_hosts_file,
            hint="treat the host as compromised until its keys are rotated",
        )


class HostUnreachable(SshError):
    """No working SSH connection: refused, timed out, reset or dropped mid-operation."""

    transient = True

    def __init__(self, host: str, port: int, reason: str, *, user: str | None = None,
                 operation: str | None = None) -> None:
        self.host, self.port, self.reason = host, port, reason
        super().__init__(
            f"SSH host {_endpoint(host, port)} is unreachable: {reason}",
            host=host, port=port, user=user, operation=operation,
            hint="check that the host is up and sshd listens on that port "
                 "(`nc -vz HOST PORT`), and any firewall between; retrying later is safe",
        )


class AuthenticationFailed(SshError):
    """The server refused our key, or the key file could not be used."""

    def __init__(self, host: str, port: int, user: str, key_file: str, reason: str, *,
                 key_fingerprint: str | None = None) -> None:
        self.host, self.port, self.user, self.key_file = host, port, user, key_file
        super().__init__(
            f"SSH authentication as {user!r} on {_endpoint(host, port)} failed: {reason}",
            host=host, port=port, user=user, key_file=key_file,
            key_fingerprint=key_fingerprint,
            hint="check that the public half of key_file is in the user's authorized_keys "
                 "on the host and that key_file is readable and not passphrase-protected",
        )


class RemoteCommandFailed(SshError):
    """A remote command exited non-zero (or was killed)."""

    def __init__(self, host: str, port: int, command: str, exit_status: int,
                 stderr_tail: str, *, user: str | None = None) -> None:
        self.host, self.port, self.command = host, port, command
        self.exit_status, self.stderr_tail = exit_status, stderr_tail
        status = "was killed or lost" if exit_status < 0 else f"exited with status {exit_status}"
        super().__init__(
            f"remote command on {_endpoint(host, port)} {status}",
            host=host, port=port, user=user, command=command, exit_status=exit_status,
            stderr_tail=stderr_tail.splitlines() or "(empty)",
            hint="read stderr_tail; reproduce with `ssh -p PORT USER@HOST COMMAND`",
        )


class RemoteCommandTimedOut(SshError):
    """A remote command did not finish within its timeout; its channel was closed."""

    def __init__(self, host: str, port: int, command: str, timeout: float,
                 stderr_tail: str) -> None:
        self.host, self.port, self.command, self.timeout = host, port, command, timeout
        super().__init__(
            f"remote command on {_endpoint(host, port)} did not finish within {timeout}s",
            host=host, port=port, command=command, timeout=timeout,
            stderr_tail=stderr_tail.splitlines() or "(empty)",
            hint="the remote process may still be running: check the host before retrying, "
                 "and consider bounding it there too (`timeout N COMMAND`)",
        )


class RemoteTransferFailed(SshError):
    """An SFTP upload/download failed for a reason other than a dropped connection."""

    def __init__(self, host: str, port: int, operation: str, remote_path: str,
                 local_path: str, reason: str) -> None:
        self.host, self.port, self.remote_path = host, port, remote_path
        super().__init__(
            f"SFTP {operation} with {_endpoint(host, port)} failed: {reason}",
            host=host, port=port, remote_path=remote_path, local_path=local_path,
            hint="check that the directories exist and are writable, and free space",
        )


class RsyncFailed(SshError):
    """rsync exited non-zero. ``transient`` is decided from the exit code and stderr;
    ``host_key_rejected`` is true when ssh refused the host key (never transient)."""

    def __init__(self, exit_code: int, meaning: str, stderr_tail: str, host: str, *,
                 port: int | None = None, command: str | None = None,
                 transient: bool = False, host_key_rejected: bool = False,
                 presented_fingerprint: str | None = None, hint: str | None = None) -> None:
        self.exit_code, self.meaning, self.stderr_tail = exit_code, meaning, stderr_tail
        self.host, self.port, self.command = host, port, command
        self.transient, self.host_key_rejected = transient, host_key_rejected
        super().__init__(
            f"rsync with {host} failed: {meaning} (exit code {exit_code})",
            host=host, port=port, exit_code=exit_code, transient=transient,
            presented_fingerprint=presented_fingerprint, command=command,
            stderr_tail=stderr_tail.splitlines() or "(empty)",
            hint=hint or ("transient: retrying resumes from .rsync-partial" if transient
                          else "read stderr_tail; retrying will not help until it is fixed"),
        )
