"""GrowingSpool: one pass over a stream, read by followers while it grows."""

from __future__ import annotations

import io
import os
import threading

import pytest

from drfleet.providers.datasources.support.spool import CHUNK, GrowingSpool, SpoolCancelled


class Gated(io.RawIOBase):
    """Hands out ``data`` in pieces, each only after ``gate`` is released once; raises
    ``fail_with`` instead of the piece numbered ``fail_at``."""

    def __init__(self, pieces: list[bytes], fail_at: int | None = None, fail_with=None) -> None:
        self.pieces, self.fail_at, self.fail_with = list(pieces), fail_at, fail_with
        self.gate = threading.Semaphore(0)
        self.served = 0

    def read(self, n=-1) -> bytes:
        self.gate.acquire()
        if self.served == self.fail_at:
            raise self.fail_with
        self.served += 1
        return self.pieces.pop(0) if self.pieces else b""


def read_all(follower) -> bytes:
    out = bytearray()
    while chunk := follower.read(CHUNK):
        out += chunk
    return bytes(out)


def test_every_follower_reads_the_whole_stream_and_the_file_is_private(tmp_path):
    data = os.urandom(3 * CHUNK + 123)
    spool = GrowingSpool(io.BytesIO(data[CHUNK:]), str(tmp_path / "s"), first=data[:CHUNK]).start()
    followers = [spool.follower() for _ in range(3)]
    assert [read_all(f) for f in followers] == [data] * 3
    assert spool.wait() == len(data)
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    spool.close()


def test_a_follower_waits_for_bytes_not_yet_written(tmp_path):
    source = Gated([b"b" * 10, b"c" * 5])
    spool = GrowingSpool(source, str(tmp_path / "s"), first=b"a" * 7).start()
    follower = spool.follower()
    assert follower.read(100) == b"a" * 7
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_all(follower)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not got  # waiting: the source has not given more
    for _ in range(3):
        source.gate.release()
    reader.join(5)
    assert got == [b"b" * 10 + b"c" * 5]
    spool.close()


def test_send_to_moves_the_same_bytes_into_a_pipe(tmp_path):
    data = os.urandom(2 * CHUNK + 7)
    spool = GrowingSpool(io.BytesIO(data[100:]), str(tmp_path / "s"), first=data[:100]).start()
    read_end, write_end = os.pipe()
    received = bytearray()

    def drain():
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)

    drainer = threading.Thread(target=drain)
    drainer.start()
    spool.follower().send_to(write_end)
    os.close(write_end)
    drainer.join(5)
    os.close(read_end)
    assert bytes(received) == data
    spool.close()


def test_the_streams_error_reaches_every_follower_and_wait(tmp_path):
    source = Gated([b"x" * 10], fail_at=1, fail_with=ValueError("chunk 3 failed its tag"))
    spool = GrowingSpool(source, str(tmp_path / "s"), first=b"head").start()
    follower = spool.follower()
    assert follower.read(100) == b"head"
    source.gate.release()
    source.gate.release()
    with pytest.raises(ValueError, match="chunk 3"):
        read_all(follower)
    with pytest.raises(ValueError, match="chunk 3"):
        spool.follower().read(10)
    with pytest.raises(ValueError, match="chunk 3"):
        spool.wait()
    spool.close()


def test_cancel_stops_the_fill_and_followers_raise(tmp_path):
    source = Gated([b"x" * 10, b"y" * 10])
    spool = GrowingSpool(source, str(tmp_path / "s"), first=b"head").start()
    follower = spool.follower()
    assert follower.read(100) == b"head"
    errors: list[BaseException] = []

    def read_more():
        try:
            read_all(follower)
        except SpoolCancelled as exc:
            errors.append(exc)

    reader = threading.Thread(target=read_more)
    reader.start()
    spool.cancel()
    reader.join(5)
    assert errors and "another consumer" in str(errors[0])
    source.gate.release()  # the fill thread finishes its pending read, then stops
    with pytest.raises(SpoolCancelled):
        spool.wait()
    assert source.served == 1  # nothing read after the cancel beyond the read in flight
    spool.close()
