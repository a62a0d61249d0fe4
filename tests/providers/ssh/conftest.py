"""Fixtures for the SSH provider tests: the shared sshd and throwaway ones."""

from __future__ import annotations

import pytest

from tests.fixtures.sshd import SshServer


@pytest.fixture
def ssh_target(sshd_server):
    """An SshTarget for the session's sshd (which tests must not kill or re-key)."""
    return sshd_server.target()


@pytest.fixture
def private_sshd():
    """A fresh sshd owned by one test, free to be killed, restarted or re-keyed."""
    with SshServer() as server:
        yield server
