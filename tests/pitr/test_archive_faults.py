"""Archive faults against a real primary: an upload killed mid-segment is retried by
PostgreSQL and never leaves a visible corrupt segment; a gap is found by `wal check` and
refused by a restore before anything is written."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.pitr.basebackup import run_base_backup
from drfleet.pitr.errors import WalGap
from drfleet.pitr.recovery import restore_to
from drfleet.pitr.wal import _home_store, list_objects, list_records, read_wal, record_key

pytestmark = pytest.mark.timeout(600)

_KILLING_PUSH = """\
import os, signal, site, sys
site.addsitedir({site_packages!r})
sys.path.insert(0, {root!r})
from pathlib import Path
from drfleet.providers.storage.filesystem import FilesystemStore

name = os.path.basename(sys.argv[-1])
mark = Path({marks!r}) / name
if len(name) == 24 and not mark.exists():
    mark.touch()
    segno = int(name[16:], 16)
    original = FilesystemStore.put_bytes

    def dying_put(self, key, data, **kwargs):
        if segno % 2 == 0 and key.endswith(".zst.dfe"):   # die half-way through the object
            writer = self.writer(key)
            writer.write(bytes(data)[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        if segno % 2 == 1 and key.endswith(".json"):      # die after the object, before the record
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key, data, **kwargs)

    FilesystemStore.put_bytes = dying_put
    child = os.fork()
    if child:  # the archive_command sees the upload's death as a failure, as from a shell wrapper
        _, status = os.waitpid(child, 0)
        sys.exit(1 if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
sys.argv = ["drfleet", *sys.argv[1:]]
from drfleet.cli.main import main
sys.exit(main())
"""


@pytest.fixture
def killing_setup(pitr_setup):
    """A primary whose upload is killed (SIGKILL) on the first try of every segment: half-way
    through the object for even segments, between object and record for odd ones."""
    s = pitr_setup
    from drfleet.pitr import cluster
    cluster.stop(str(s.data_dir))
    marks = s.base / "marks"
    marks.mkdir()
    s._chown(marks)
    script = s.base / "killing_push.py"
    script.write_text(_KILLING_PUSH.format(site_packages=s.site_packages, marks=str(marks),
                                           root=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    os.chmod(script, 0o644)
    command = s.archive_command(executable=f"{s.server_python} {script}")
    with open(s.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write("archive_command = '" + command.replace("'", "''") + "'\n")
    cluster.start(str(s.data_dir), s.port, until="primary", timeout=60)
    return s


def test_an_upload_killed_mid_segment_is_retried_and_never_visible_half_written(killing_setup):
    s = killing_setup
    s.sql("CREATE TABLE t (id int)")
    backup = run_base_backup(s.plan, s.dataset)
    for batch in range(3):
        s.sql(f"INSERT INTO t SELECT g FROM generate_series({batch * 1000 + 1}, {batch * 1000 + 1000}) g")
        s.switch_and_wait(timeout=120)
    killed = [mark.name for mark in (s.base / "marks").iterdir()]
    assert len(killed) >= 4  # the base backup's segments and the three switched ones
    # each kill is one failed archive_command; the archiver reports its count a little later
    deadline = time.monotonic() + 30
    while s.archiver()["failed_count"] < len(killed) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s.archiver()["failed_count"] >= len(killed)
    store = _home_store(s.plan, s.dataset)
    names = [name for name, _ in list_records(store, s.dataset)]
    for name in names:  # every visible file passes every check
        assert read_wal(s.plan, s.dataset, name)
    # what the killed uploads left: temp files and objects without a record, neither visible
    assert list((s.store / ".partial").iterdir())
    assert len(list(list_objects(store, s.dataset))) > len(names)
    result = restore_to(s.plan, s.dataset, s.new_dir("after-kills"), "latest", plan_path=str(s.plan_path))
    assert s.sql("SELECT count(*) FROM t", port=result["port"]) == [(3000,)]
    assert backup["start_wal"] in names


def test_a_gap_is_found_by_wal_check_and_refused_before_a_restore_needs_it(pitr_setup):
    s = pitr_setup
    s.sql("CREATE TABLE t (id int)")
    run_base_backup(s.plan, s.dataset)
    switched = []
    for batch in range(3):
        s.sql(f"INSERT INTO t VALUES ({batch})")
        switched.append(s.switch_and_wait())
    run = CliRunner().invoke(main, ["wal", "check", s.dataset, "--plan", str(s.plan_path)])
    assert run.exit_code == 0, run.output
    missing = switched[1]
    _home_store(s.plan, s.dataset).delete(record_key(s.dataset, missing))

    run = CliRunner().invoke(main, ["wal", "check", s.dataset, "--plan", str(s.plan_path)])
    assert run.exit_code == 1
    assert f"1 segment(s) missing from {missing}" in run.output
    target = s.new_dir("across-the-gap")
    with pytest.raises(WalGap) as caught:
        restore_to(s.plan, s.dataset, target, "latest", plan_path=str(s.plan_path))
    assert switched[0] in str(caught.value)
    assert not os.path.exists(target)
