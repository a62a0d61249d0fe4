"""Producers over real subprocesses and real threads: data, failures, kills, stderr tails."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from drfleet.providers.datasources.errors import DataSourceError, FileUnreadable, SourceToolFailed, ToolNotInstalled
from drfleet.providers.datasources.support.producer import ProcessProducer, ThreadProducer
from drfleet.providers.datasources.support.tools import TAIL_LINES, run_tool

PY = sys.executable


def read_all(producer, size=1 << 20) -> bytes:
    chunks = []
    while chunk := producer.read(size):
        chunks.append(chunk)
    return b"".join(chunks)


def test_process_output_is_streamed_and_a_clean_exit_closes_quietly():
    producer = ProcessProducer([PY, "-c", "import sys; sys.stdout.buffer.write(b'x' * 3_000_000)"])
    with producer:
        assert read_all(producer, 65536) == b"x" * 3_000_000
        assert producer.read(10) == b""


def test_readinto_fills_the_buffer_until_the_end():
    producer = ProcessProducer([PY, "-c", "import sys; sys.stdout.buffer.write(b'abc' * 1000)"])
    buf = bytearray(2048)
    got = bytearray()
    while count := producer.readinto(buf):
        got += buf[:count]
    producer.close()
    assert bytes(got) == b"abc" * 1000


def test_data_written_before_a_failure_does_not_make_it_a_success():
    producer = ProcessProducer(
        ["sh", "-c", "printf 'PGDMP partial dump of 29 bytes'; echo 'disk on fire' >&2; exit 3"],
        tool="fake_dump", facts={"database": "shop"})
    assert read_all(producer) == b"PGDMP partial dump of 29 bytes"
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    err = caught.value
    assert (err.tool, err.returncode, err.stderr_tail) == ("fake_dump", 3, ["disk on fire"])
    assert "exit" in str(err) and "disk on fire" in str(err) and "database: shop" in str(err)
    assert isinstance(err, DataSourceError)


def test_stderr_is_drained_and_only_its_tail_kept():
    # 200k stderr lines (several MB) would block the child if stderr were not drained.
    script = ("import sys\nfor i in range(200_000): sys.stderr.write(f'line {i}\\n')\n"
              "sys.stdout.write('done'); sys.exit(1)")
    producer = ProcessProducer([PY, "-c", script])
    assert read_all(producer) == b"done"
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert caught.value.stderr_tail == [f"line {i}" for i in range(200_000 - TAIL_LINES, 200_000)]


def test_kill_mid_stream_makes_close_raise():
    producer = ProcessProducer([PY, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'y' * 65536)"])
    assert producer.read(100_000) == b"y" * 100_000
    producer.kill()
    read_all(producer)  # the rest until the pipe closes
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert "killed" in str(caught.value) and caught.value.returncode == -9


def test_closing_before_the_end_is_a_failure_not_a_silent_truncation():
    producer = ProcessProducer([PY, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'z' * 65536)"])
    producer.read(10)
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert "reader stopped before the end" in str(caught.value)


def test_secrets_are_scrubbed_from_the_stderr_tail():
    producer = ProcessProducer(["sh", "-c", "echo 'auth failed for hunter2' >&2; exit 1"],
                               secrets=["hunter2"])
    read_all(producer)
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_a_missing_tool_is_named_and_cleanup_still_runs():
    cleaned = []
    with pytest.raises(ToolNotInstalled) as caught:
        ProcessProducer(["drfleet-no-such-tool-xyz"], cleanup=[lambda: cleaned.append(1)])
    assert "drfleet-no-such-tool-xyz" in str(caught.value) and cleaned == [1]


def test_exception_in_with_block_kills_the_producer_and_propagates():
    with pytest.raises(ZeroDivisionError):
        with ProcessProducer([PY, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'q' * 65536)"]) as producer:
            producer.read(10)
            1 / 0
    assert producer.closed


def test_a_producer_that_failed_on_its_own_wins_over_the_consumer_error():
    producer = ProcessProducer(["sh", "-c", "printf 'trunc'; echo 'pg_dump: error: boom' >&2; exit 1"])
    with pytest.raises(SourceToolFailed) as caught:
        with producer:
            data = read_all(producer)
            producer._proc.wait()  # let the exit be observed (no sleep: wait for the child)
            raise ValueError(f"consumer could not parse {data!r}")
    assert caught.value.stderr_tail == ["pg_dump: error: boom"]
    assert isinstance(caught.value.__context__, ValueError)


def test_cleanup_runs_after_close():
    cleaned = []
    producer = ProcessProducer(["true"], cleanup=[lambda: cleaned.append("passfile")])
    read_all(producer)
    producer.close()
    assert cleaned == ["passfile"]


# --- thread producers -----------------------------------------------------------------

def test_thread_producer_streams_what_the_work_writes():
    def work(sink):
        for i in range(100):
            sink.write(bytes([i]) * 50_000)

    with ThreadProducer(work, tool="gen") as producer:
        data = read_all(producer)
    assert len(data) == 5_000_000 and data[:50_000] == b"\x00" * 50_000


def test_thread_producer_failure_after_data_raises_on_close():
    def work(sink):
        sink.write(b"partial")
        raise RuntimeError("socket reset")

    producer = ThreadProducer(work, tool="gen", facts={"host": "db1"})
    assert read_all(producer) == b"partial"
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert caught.value.stderr_tail == ["RuntimeError: socket reset"]
    assert "host: db1" in str(caught.value)


def test_thread_producer_reraises_drfleet_errors_as_they_are():
    def work(sink):
        raise FileUnreadable("/data/x", "it vanished during the backup")

    producer = ThreadProducer(work, tool="tar")
    read_all(producer)
    with pytest.raises(FileUnreadable, match="/data/x"):
        producer.close()


def test_thread_producer_killed_while_blocked_on_a_full_pipe():
    started = threading.Event()

    def work(sink):
        started.set()
        while True:
            sink.write(b"w" * 65536)

    producer = ThreadProducer(work, tool="gen")
    assert started.wait(10)
    producer.read(1000)
    producer.kill()
    with pytest.raises(SourceToolFailed, match="killed"):
        producer.close()


def test_thread_producer_kill_unblocks_work_waiting_on_input():
    read_fd, write_fd = os.pipe()  # stands for a socket that never delivers

    def work(sink):
        with open(read_fd, "rb", buffering=0) as source:
            sink.write(source.read(10))

    producer = ThreadProducer(work, tool="gen", on_kill=lambda: os.close(write_fd))
    producer.kill()
    with pytest.raises(SourceToolFailed, match="killed"):
        producer.close()


def test_run_tool_feeds_stdin_and_reports_the_stderr_tail():
    import io

    code, tail = run_tool(["sh", "-c", "wc -c >&2; exit 4"], stdin=io.BytesIO(b"a" * 5_000_000))
    assert code == 4 and tail == ["5000000"]


def test_a_tools_stdin_pipe_is_widened_to_hold_several_chunks():
    """run_tool's writer prepares the next 1 MiB chunk while the tool reads the last one
    only if the pipe has room for it (the kernel's default is 64 KiB)."""
    import fcntl

    from drfleet.providers.datasources.support.tools import COPY_CHUNK, widen_pipe

    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb", closefd=False) as pipe:
            granted = widen_pipe(pipe)
        assert granted == fcntl.fcntl(write_end, getattr(fcntl, "F_GETPIPE_SZ", 1032)) >= COPY_CHUNK
    finally:
        os.close(read_end)
        os.close(write_end)
