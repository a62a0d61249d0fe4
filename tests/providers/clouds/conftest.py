"""Fixtures for the VPS provider client tests: one contract server per provider and a client
pointed at it (see harness.py)."""

from __future__ import annotations

import secrets
from typing import Iterator

import pytest

from tests.providers.clouds.harness import CASES, FakeClock, Harness, ProviderCase


def _harness(case: ProviderCase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    token = f"secret-{case.name}-{secrets.token_hex(16)}"
    monkeypatch.setenv(case.token_env, token)
    with case.contract(token=token) as server:
        harness = Harness(case, server, None, FakeClock(), token)  # type: ignore[arg-type]
        harness.client = harness.make_client()
        yield harness
        server.assert_no_violations()


@pytest.fixture(params=sorted(CASES))
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """Every provider in turn: its contract server and a client pointed at it."""
    yield from _harness(CASES[request.param], monkeypatch)


@pytest.fixture
def hetzner(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from _harness(CASES["hetzner"], monkeypatch)


@pytest.fixture
def digitalocean(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from _harness(CASES["digitalocean"], monkeypatch)


@pytest.fixture
def linode(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from _harness(CASES["linode"], monkeypatch)


@pytest.fixture
def vultr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from _harness(CASES["vultr"], monkeypatch)
