"""`drfleet audit` over a long log: 100,000 records in a private redis-server (setup not
timed), then the queries an operator types. Filters apply before the limit, so a rare action
is found however far back it is; the figure is how long finding it takes.

* newest 100 of everything (no filter)
* the 10 newest of an action that is 1 record in 1,000 (reads pages until 10 match)
* the one record of an action that occurs once, at the very start of the log (reads it all)
* --since the last 1 % of the log
"""

from __future__ import annotations

import json
import time


def run(records: int = 100_000) -> dict:
    import redis

    from drfleet.state.audit import AUDIT_STREAM, entries
    from tests.fixtures.redis_server import RedisServer

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)
        base = 1_700_000_000_000
        pipe = client.pipeline(transaction=False)
        for i in range(records):
            action = "keys.rotate" if i == 0 else ("drill" if i % 1000 == 0 else "drfleet.backup")
            pipe.xadd(AUDIT_STREAM, {"action": action, "actor": "beat", "outcome": "succeeded",
                                     "at": f"{(base + i) / 1000:.3f}",
                                     "details": json.dumps({"dataset": f"ds-{i % 50}", "n": i})}, id=f"{base + i}-0")
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

        def timed(**kw):
            t0 = time.perf_counter()
            found = list(entries(client=client, newest_first=True, **kw))
            return round(time.perf_counter() - t0, 3), len(found)

        newest_s, _ = timed(limit=100)
        rare_s, rare_n = timed(action="drill", limit=10)
        first_s, first_n = timed(action="keys.rotate", limit=1)
        since_s, since_n = timed(since=(base + records * 0.99) / 1000, limit=records)
        return {"records": records, "newest_100_s": newest_s, "rare_10_s": rare_s, "rare_found": rare_n,
                "oldest_single_s": first_s, "oldest_found": first_n, "since_last_1pct_s": since_s,
                "since_found": since_n}
    finally:
        server.cleanup()


if __name__ == "__main__":
    print(run())
