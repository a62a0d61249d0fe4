"""`drfleet storage prepare`: versioning and Object Lock turned on with an administrator's
credentials (a real moto server), and a clear refusal for a location that is not S3."""

from __future__ import annotations

from click.testing import CliRunner

from drfleet.cli.storage_cmds import storage_group
from tests.fixtures.fleet import write_plan


def _plan(tmp_path, s3_server, bucket):
    storage = (f"vault: {{kind: s3, offsite: true, bucket: {bucket}, endpoint_url: '{s3_server.endpoint_url}', "
               f"s3_region: {s3_server.region}, versioning: true}}\n")
    return write_plan(tmp_path / "plan", storage=storage)


def test_prepare_turns_versioning_on_with_the_admins_credentials(tmp_path, s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    plan = _plan(tmp_path, s3_server, s3_bucket)
    result = CliRunner().invoke(storage_group, ["prepare", "--plan", str(plan), "vault"])
    assert result.exit_code == 0, result.output
    assert "versioning enabled" in result.output
    assert s3_server.client().get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    again = CliRunner().invoke(storage_group, ["prepare", "--plan", str(plan), "vault"])
    assert "already prepared" in again.output


def test_prepare_refuses_a_location_that_is_not_s3(tmp_path, s3_server):
    plan = _plan(tmp_path, s3_server, "b")
    result = CliRunner().invoke(storage_group, ["prepare", "--plan", str(plan), "offsite"])
    assert result.exit_code == 1 and "'offsite' is not an s3 location" in result.output
