"""Mutated inputs to every reader end in a DrfleetError (a clear error with facts and a
hint), never another exception, a hang, or a write outside the target."""

from __future__ import annotations

import io
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from drfleet.backup_format.datakey import DataKey
from drfleet.backup_format.envelope import ObjectOpener
from drfleet.backup_format.errors import EnvelopeError, ManifestError
from drfleet.backup_format.manifest import Manifest
from drfleet.errors import DrfleetError
from drfleet.plan.loader import load_plan_text
from drfleet.plan.models import Plan
from drfleet.providers.datasources import files
from tests.fuzz.conftest import CORPUS, FUZZ, corpus
from tests.fuzz.mutations import mutated

KEY = DataKey(bytes.fromhex((CORPUS / "KEY.hex").read_text().strip()))
MANIFEST_SOURCE = "datasets/orders/manifests/20240501T031500Z-9f2c01ab.json"


@contextmanager
def no_hang(seconds: int = 10):
    """Fail (instead of hanging the suite) when a reader takes longer than ``seconds``."""
    def expired(signum, frame):
        raise AssertionError(f"reader did not finish within {seconds}s: a hang")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@FUZZ
@given(mutated(corpus("plan")))
def test_plan_loader_gives_a_plan_or_a_located_error(text):
    with no_hang():
        try:
            plan = load_plan_text(text.decode("utf-8", errors="replace"), source="fuzz.yaml")
        except DrfleetError as exc:
            assert str(exc).strip(), "an error must say something"
            return
    assert isinstance(plan, Plan)


@FUZZ
@given(st.binary(max_size=512) | mutated(corpus("manifest")))
@example(b"")
@example(b"{}")
@example(b'{"format":"drfleet-manifest","version":1e999}')
def test_manifest_reader_gives_a_manifest_or_a_manifest_error(data):
    with no_hang():
        try:
            manifest = Manifest.from_bytes(data, source=MANIFEST_SOURCE)
        except ManifestError as exc:
            assert exc.facts or str(exc)
            return
    assert manifest.version == 1


@FUZZ
@given(st.binary(max_size=512) | mutated(corpus("envelope")))
def test_envelope_reader_yields_authentic_chunks_or_an_envelope_error(data):
    original = {seed: _open(seed) for seed in corpus("envelope")}
    with no_hang():
        try:
            plaintext = _open(data)
        except EnvelopeError as exc:
            assert exc.facts.get("object") == "data-0000.zst.dfe" or "data-0000.zst.dfe" in str(exc)
            return
    # Whatever opened cleanly must be exactly one of the sealed originals: no forgery.
    assert plaintext in original.values()


def _open(data: bytes) -> bytes:
    return b"".join(ObjectOpener(KEY, "data-0000.zst.dfe").read_stream(io.BytesIO(data),
                                                                           expected_size=len(data)))


@FUZZ
@given(mutated(corpus("tar")))
def test_tar_restorer_never_writes_outside_its_target(data):
    with tempfile.TemporaryDirectory(prefix="drfleet-fuzz-") as tmp:
        outside = Path(tmp)
        target = outside / "deep" / "target"
        (outside / "sentinel").write_text("untouched")
        before = _tree(outside)
        with no_hang():
            try:
                files.restore(str(target), io.BytesIO(data), {"owners": False})
            except DrfleetError:
                pass
        after = _tree(outside)
        escaped = {p for p in after - before if not p.startswith("deep/target") and p != "deep"}
        assert not escaped, f"written outside the target: {sorted(escaped)}"
        assert (outside / "sentinel").read_text() == "untouched"


def _tree(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


@pytest.mark.parametrize("seed", ["hostile.tar"])
def test_the_hostile_seed_is_refused_as_unsafe(seed, tmp_path):
    from drfleet.providers.datasources.errors import UnsafeArchiveMember
    with pytest.raises(UnsafeArchiveMember) as caught:
        files.restore(str(tmp_path / "t"), io.BytesIO((CORPUS / "tar" / seed).read_bytes()), {"owners": False})
    assert "escape.txt" in str(caught.value) or "escape" in str(caught.value.facts)
    assert not (tmp_path / "escape.txt").exists()
