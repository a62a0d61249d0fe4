"""SSH, SFTP and rsync access to drfleet's remote hosts, with strict host key checking.

- ``client``: ``SshTarget`` (paths, not key material) and ``SshSession`` (run commands,
  stream a remote dump, atomic SFTP upload/download).
- ``hostkeys``: known_hosts verification; unknown or changed keys are always refused.
- ``rsync``: ``rsync_pull``/``rsync_push`` over ssh and ``with_retries`` for transient
  failures.
- ``errors``: everything raised on purpose, all ``drfleet.errors.DrfleetError``.
"""

from drfleet.providers.ssh.client import CompletedRemote, SshSession, SshTarget
from drfleet.providers.ssh.errors import (
                                  AuthenticationFailed,
                                  HostKeyChanged,
                                  HostKeyRejected,
                                  HostKeyRevoked,
                                  HostUnreachable,
                                  RemoteCommandFailed,
                                  RemoteCommandTimedOut,
                                  RemoteTransferFailed,
                                  RsyncFailed,
                                  SshError,
                                  UnknownHostKey,
)
from drfleet.providers.ssh.remote_stream import RemoteStream
from drfleet.providers.ssh.rsync import RsyncResult, rsync_pull, rsync_push, with_retries

__all__ = [
    "AuthenticationFailed", "CompletedRemote", "HostKeyChanged", "HostKeyRejected",
    "HostKeyRevoked", "HostUnreachable", "RemoteCommandFailed", "RemoteCommandTimedOut",
    "RemoteStream", "RemoteTransferFailed", "RsyncFailed", "RsyncResult", "SshError",
    "SshSession", "SshTarget", "UnknownHostKey", "rsync_pull", "rsync_push", "with_retries",
]
