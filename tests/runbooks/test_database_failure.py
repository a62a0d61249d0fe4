"""Database failure with a real primary and standby: the primary stops; the runbook detects
it, waits for an operator's approval, promotes the standby, redirects clients (Route 53
record and an endpoint file pushed over SSH), builds a new standby of the new primary over
SSH with pg_basebackup, and verifies that a write on the new primary reaches it."""

from __future__ import annotations

import shutil
import types
import uuid
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg

from drfleet.providers.clouds.base import ServerSpec
from drfleet.runbooks.records import RunStore
from drfleet.runbooks.runner import approve_step
from tests.fixtures.util import free_port, wait_for
from tests.runbooks.pg_pair import Standby, in_recovery, owned_dir, primary_with_replication, stop_cluster_in
from tests.runbooks.world import steps_by_status


@contextmanager
def failing_database(world, monkeypatch, s3_server):
    """A primary with a streaming standby (one row replayed), a Route 53 record and an
    endpoint file pointing at the primary, a host for the new standby, and the plan's
    recovery section for app-db. Yields a namespace; stops every cluster afterwards."""
    primary = primary_with_replication()
    standby = new_dir = None
    try:
        primary.psql("CREATE TABLE accounts (id int PRIMARY KEY, owner text); INSERT INTO accounts VALUES (1, 'ann')")
        standby = Standby(primary).start()
        wait_for(lambda: psycopg.connect(standby.dsn()).execute("SELECT count(*) FROM accounts").fetchone()[0] == 1,
                 timeout=30, what="the standby to replay the first row")

        zone = f"z{uuid.uuid4().hex[:8]}.example.com"
        r53 = boto3.session.Session().client("route53", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                                             aws_access_key_id="k", aws_secret_access_key="s")
        zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
            "ResourceRecordSet": {"Name": f"db.{zone}.", "Type": "A", "TTL": 60,
                                  "ResourceRecords": [{"Value": "192.0.2.20"}]}}]})

        db_host, _ = world.cloud.create_server(ServerSpec(name="db-2"))
        with open(world.known_hosts, "a") as known:
            known.write(f"[127.0.0.1]:{db_host.ssh_port} {db_host.host_key}\n")
        new_dir = owned_dir("drfleet-newstandby-")
        new_port = free_port()
        world.env.update(APP_DB_URL=primary.dsn(), APP_DB_STANDBY_URL=standby.dsn(),
                         R53_KEY=s3_server.access_key_id, R53_SECRET=s3_server.secret_access_key)
        datasets = ("app-db:\n  kind: postgres\n  region: eu-central\n  connection: {env: APP_DB_URL}\n"
                    "  key: content\n  rpo: 1h\n  rto: 15m\n"
                    "  policies:\n    - {name: daily, trigger: daily, keep: 7 days, copies: [home-region]}\n")
        recovery = f"""\
dns: {{provider: route53, zone: {zone}, endpoint_url: "{s3_server.endpoint_url}", region: us-east-1,
      access_key: {{env: R53_KEY}}, secret_key: {{env: R53_SECRET}}}}
databases:
  app-db:
    standby: {{env: APP_DB_STANDBY_URL}}
    dns: {{name: db, type: A}}
    endpoint_file: {{host: web-1, path: "{{root}}/etc/app/db-endpoint"}}
    new_standby: {{host: db-2, data_dir: {new_dir}/data, port: {new_port}, run_as: postgres,
                  listen: 127.0.0.1, socket_dir: {new_dir}/data}}
"""
        world.write(datasets=datasets, services="services: {}\n", extra_recovery=recovery,
                    hosts=[world.host_line("db-2", db_host)])
        yield types.SimpleNamespace(primary=primary, standby=standby, new_port=new_port)
    finally:
        if new_dir:
            stop_cluster_in(new_dir / "data")
            shutil.rmtree(new_dir, ignore_errors=True)
        if standby:
            standby.stop()
        primary.cleanup()


def test_the_standby_is_promoted_after_approval_and_a_new_standby_follows_it(world, monkeypatch, s3_server) -> None:
    from drfleet.tasks.runbooks import database_failure

    with failing_database(world, monkeypatch, s3_server) as db:
        primary, standby, new_port = db.primary, db.standby, db.new_port
        world.start_fleet(monkeypatch, "eu-central")

        primary.stop()                                            # the primary fails
        run_id = database_failure("app-db").apply_async().run_id
        world.wait_step(run_id, "promote-standby", "waiting-approval")
        world.wait_polls(run_id, "promote-standby", polls=3)
        assert in_recovery(standby.dsn()), "nothing may be promoted before the approval"

        import pyotp

        from drfleet.state import operators
        uri = operators.enroll("second-operator", ["approve"], by="test")
        code = pyotp.parse_uri(uri).now()
        approve_step(run_id, "promote-standby", by="second-operator", code=code)
        run = world.wait_run(run_id, timeout=180)

        records = RunStore().step_records(run_id)
        assert run.status == "succeeded", records
        print(f"\ndatabase failover: RTO {run.rto_seconds:.1f}s including the approval wait (run {run_id})")
        assert list(steps_by_status(run_id).values()) == ["succeeded"] * 5
        assert records["detect"]["output"]["primary_down"] is True
        assert records["promote-standby"]["output"]["promoted"] is True

        # the promoted standby takes writes
        assert not in_recovery(standby.dsn())
        with psycopg.connect(standby.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO accounts VALUES (2, 'bob')")
        # clients are pointed at it
        dns = records["redirect-clients"]["output"]["dns"]
        assert dns["old_values"] == ["192.0.2.20"] and dns["new_values"] == ["127.0.0.1"]
        assert (Path(world.web1.root) / "etc/app/db-endpoint").read_text() == f"127.0.0.1:{standby.port}/postgres\n"
        # and a new standby follows the new primary
        new_dsn = f"postgresql://postgres@127.0.0.1:{new_port}/postgres"
        assert in_recovery(new_dsn)
        wait_for(lambda: psycopg.connect(new_dsn).execute("SELECT owner FROM accounts WHERE id = 2").fetchone(),
                 timeout=30, what="the new standby to replay the write")
        assert records["verify-integrity"]["output"]["new_standby"]["replicated"] is True
