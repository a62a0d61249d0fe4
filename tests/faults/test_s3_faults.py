"""Backups through a fault-injecting proxy in front of a real moto S3 server: 500s, 503
SlowDowns, resets and cut responses are retried and the backup commits; a longer outage
fails the backup with StoreUnavailable, and no incomplete upload outlives the reaper."""

from tests.faults import scenarios


def test_s3_faults_are_retried_or_fail_clearly_and_leave_nothing(tmp_path, s3_server, faulty_s3):
    row = scenarios.s3_faults(tmp_path, s3_server, faulty_s3)
    print(row)
    row.check()
    # every fault but the outage is retried away; the outage either is too, or fails clearly
    assert row.committed + row.notes["failed_clearly"] == len(scenarios.S3_FAULTS)
    assert row.committed >= len(scenarios.S3_FAULTS) - 1
    assert row.notes["connections_faulted"] > 0
