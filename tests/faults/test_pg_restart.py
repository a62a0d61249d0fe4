"""PostgreSQL restarted while a real worker streams pg_dump's table data: the attempt fails
with pg_dump's own words and commits nothing, and the task's in-slot retry commits the slot."""

from tests.faults import scenarios


def test_a_postgres_restart_mid_dump_fails_clearly_and_the_retry_commits_whole(tmp_path, redis_url):
    row = scenarios.pg_restarts(tmp_path, redis_url, restarts=1, megabytes=16)
    print(row)
    row.check()
    assert row.notes["failed_clearly"] == row.repetitions == 1
    assert row.committed == 1  # the retry, and nothing of the failed attempt
    assert row.notes["pg_dump_said"], "pg_dump's stderr never reached the worker's error"
