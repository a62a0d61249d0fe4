"""The SSH peer dropping while rsync stages a remote tree: a dropped connection is resumed
by rsync's retry within the run; an sshd outage fails the run clearly with nothing
committed, and running the backup again once sshd is back commits the slot whole."""

from tests.faults import scenarios


def test_ssh_drops_mid_transfer_are_resumed_or_fail_clearly_and_commit_on_retry(tmp_path):
    row = scenarios.ssh_drops(tmp_path, drops=len(scenarios.SSH_FAULTS))
    print(row)
    row.check()
    assert row.notes["resumed_by_rsync_retry"] == 1 and row.notes["failed_clearly"] == 1
    assert row.committed == row.repetitions  # one whole backup per slot, none of a failed run
    assert row.notes["rsync_partial_left"] == 0
