import redis

from drfleet.state.verifications import forget, record_result, results, verified_backup_ids


def test_latest_result_per_copy_wins_and_only_ok_copies_count_as_verified(redis_url):
    client = redis.Redis.from_url(redis_url)
    record_result("db", "b1", "eu", depth="quick", ok=True, at=1.0, client=client)
    record_result("db", "b2", "eu", depth="full", ok=True, at=2.0, client=client)
    record_result("db", "b2", "eu", depth="deep", ok=False, problems=["fingerprint mismatch"], at=3.0,
                  client=client)
    record_result("db", "b3", "us", depth="quick", ok=False, at=4.0, client=client)
    assert verified_backup_ids("db", client=client) == {"b1"}
    latest = [r for r in results("db", client=client) if r.backup_id == "b2"]
    assert [(r.depth, r.ok, r.problems) for r in latest] == [("deep", False, ("fingerprint mismatch",))]


def test_forget_drops_one_copy_only(redis_url):
    client = redis.Redis.from_url(redis_url)
    record_result("db", "b1", "eu", depth="quick", ok=True, client=client)
    record_result("db", "b1", "us", depth="quick", ok=True, client=client)
    forget("db", "b1", "eu", client=client)
    assert [(r.backup_id, r.location) for r in results("db", client=client)] == [("b1", "us")]
