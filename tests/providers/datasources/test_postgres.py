"""postgres data source against a real cluster (tests/fixtures/postgres_cluster.py)."""

from __future__ import annotations

import io
import re

import pytest

from drfleet.providers.datasources import postgres
from drfleet.providers.datasources.errors import InvalidSourceOptions, RestoreFailed, SourceToolFailed
from tests.fixtures.util import wait_for

SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, note text,
                               joined timestamptz, score double precision, tags jsonb,
                               avatar bytea);
CREATE INDEX customers_name ON public.customers (name);
CREATE TABLE billing.invoices (id bigint PRIMARY KEY, customer int REFERENCES public.customers,
                               amount numeric(12, 2), paid boolean);
CREATE TABLE public.empty_table (x int);
INSERT INTO public.customers (name, note, joined, score, tags, avatar)
SELECT 'customer ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END,
       '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', g / 7.0,
       jsonb_build_object('g', g, 'even', g % 2 = 0), decode(md5(g::text), 'hex')
FROM generate_series(1, 500) g;
INSERT INTO billing.invoices SELECT g, 1 + g % 500, g * 1.25, g % 2 = 0
FROM generate_series(1, 800) g;
"""


def read_all(producer) -> bytes:
    chunks = []
    while chunk := producer.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def source_db(pg_cluster):
    pg_cluster.create_database("ds_source")
    pg_cluster.psql(SCHEMA, "ds_source")
    return "ds_source"


INDEXES = "SELECT schemaname, indexname FROM pg_indexes WHERE schemaname IN ('public', 'billing') ORDER BY 1, 2"
FOREIGN_KEYS = "SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1"


@pytest.mark.parametrize("mode", ["stream", "spool"])
def test_dump_restore_round_trip_gives_equal_fingerprints(pg_cluster, source_db, mode):
    producer = postgres.dump(pg_cluster.dsn(source_db, secret=True))
    assert pg_cluster.SECRET_PASSWORD not in " ".join(producer.argv)
    assert "s3cr" not in " ".join(producer.argv)
    with producer:
        data = read_all(producer)
    assert data.startswith(b"PGDMP")
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", producer.position["lsn"])
    assert producer.position["timeline"] == 1

    pg_cluster.create_database(f"ds_restored_{mode}")
    postgres.restore(pg_cluster.dsn(f"ds_restored_{mode}", secret=True), io.BytesIO(data),
                     {"jobs": 2, "mode": mode})

    source = postgres.fingerprint(pg_cluster.dsn(source_db))
    restored = postgres.fingerprint(pg_cluster.dsn(f"ds_restored_{mode}", secret=True))
    assert source == restored
    for query in (INDEXES, FOREIGN_KEYS):  # post-data (built from the spool in stream mode)
        assert pg_cluster.psql(query, f"ds_restored_{mode}") == pg_cluster.psql(query, source_db)
    assert len(pg_cluster.psql(INDEXES, source_db)) == 3
    assert source["tables"] == ["billing.invoices", "public.customers", "public.empty_table"]
    assert source["per_table"]["public.customers"]["rows"] == 500
    assert source["per_table"]["public.empty_table"]["rows"] == 0


def test_fingerprint_changes_when_one_row_changes(pg_cluster, source_db):
    pg_cluster.create_database("ds_mutated")
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)
    postgres.restore(pg_cluster.dsn("ds_mutated"), io.BytesIO(data))
    before = postgres.fingerprint(pg_cluster.dsn("ds_mutated"))
    pg_cluster.psql("UPDATE billing.invoices SET paid = NOT paid WHERE id = 17", "ds_mutated")
    after = postgres.fingerprint(pg_cluster.dsn("ds_mutated"))
    assert before["per_table"]["public.customers"] == after["per_table"]["public.customers"]
    assert before["per_table"]["billing.invoices"] != after["per_table"]["billing.invoices"]
    assert before["per_table"]["billing.invoices"]["rows"] == after["per_table"]["billing.invoices"]["rows"]
    assert before["digest"] != after["digest"]


def test_restore_with_clean_replaces_existing_objects(pg_cluster, source_db):
    pg_cluster.create_database("ds_clean")
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)
    postgres.restore(pg_cluster.dsn("ds_clean"), io.BytesIO(data))
    pg_cluster.psql("DELETE FROM billing.invoices WHERE id > 10", "ds_clean")
    postgres.restore(pg_cluster.dsn("ds_clean"), io.BytesIO(data), {"clean": True, "jobs": 1})
    assert postgres.fingerprint(pg_cluster.dsn("ds_clean")) == \
        postgres.fingerprint(pg_cluster.dsn(source_db))


def test_dump_of_a_missing_database_fails_with_pg_dumps_words_and_no_password(pg_cluster):
    producer = postgres.dump(pg_cluster.dsn("no_such_db", secret=True))
    assert producer.position["lsn"] is None  # best effort: the dump itself reports why
    assert read_all(producer) == b""
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    err = caught.value
    assert err.tool == "pg_dump" and err.returncode == 1
    assert any('database "no_such_db" does not exist' in line for line in err.stderr_tail)
    assert err.facts["database"] == "no_such_db"
    text = str(err) + repr(err.facts)
    assert pg_cluster.SECRET_PASSWORD not in text and "s3cr" not in text


def test_wrong_password_is_reported_without_the_password(pg_cluster):
    dsn = pg_cluster.dsn("postgres", secret=True).replace("s3cr", "WRONGs3cr")
    producer = postgres.dump(dsn)
    read_all(producer)
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert any("password authentication failed" in line for line in caught.value.stderr_tail)
    assert "WRONGs3cr" not in str(caught.value) and "s3cr" not in str(caught.value)


def test_producer_killed_mid_stream_fails_on_close(pg_cluster):
    pg_cluster.create_database("ds_big")
    pg_cluster.psql("CREATE TABLE blob AS SELECT g, repeat(md5(g::text), 8) AS payload "
                    "FROM generate_series(1, 60000) g", "ds_big")  # ~17 MB uncompressed
    producer = postgres.dump(pg_cluster.dsn("ds_big"))
    assert len(producer.read(65536)) == 65536
    producer.kill()
    with pytest.raises(SourceToolFailed) as caught:
        producer.close()
    assert "killed" in str(caught.value)


def test_restore_of_garbage_fails_with_pg_restores_words(pg_cluster):
    pg_cluster.create_database("ds_garbage")
    with pytest.raises(RestoreFailed) as caught:
        postgres.restore(pg_cluster.dsn("ds_garbage", secret=True), io.BytesIO(b"not a dump" * 10))
    assert caught.value.tool == "pg_restore" and caught.value.returncode == 1
    assert any("valid archive" in line for line in caught.value.stderr_tail)
    assert "s3cr" not in str(caught.value)


def test_empty_stream_is_refused_before_pg_restore(pg_cluster):
    with pytest.raises(RestoreFailed, match="empty"):
        postgres.restore(pg_cluster.dsn("postgres"), io.BytesIO(b""))


def test_a_stream_that_fails_part_way_kills_pg_restore_and_raises_its_error(pg_cluster, source_db):
    """Streamed restore: pg_restore is already loading when the stream breaks (a corrupt
    chunk, a hash mismatch at its end); the stream's own error is what the caller gets."""
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)

    class Breaking(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > len(data) // 2:
                raise ValueError("chunk 7 failed its tag")
            return super().read(min(n, 4096) if n and n > 0 else 4096)

    pg_cluster.create_database("ds_broken_stream")
    with pytest.raises(ValueError, match="chunk 7") as caught:
        postgres.restore(pg_cluster.dsn("ds_broken_stream"), Breaking(data))
    assert pg_cluster.psql(INDEXES, "ds_broken_stream") == []  # post-data never ran
    assert any(note.startswith("target_state: as it was") for note in caught.value.__notes__)


def test_parallel_dump_is_refused_and_unknown_options_named():
    with pytest.raises(InvalidSourceOptions, match="directory format"):
        postgres.dump("postgresql://u@127.0.0.1:1/db", {"jobs": 4})
    with pytest.raises(InvalidSourceOptions, match="colour"):
        postgres.restore("postgresql://u@127.0.0.1:1/db", io.BytesIO(b""), {"colour": "red"})
    with pytest.raises(InvalidSourceOptions, match="unknown restore mode 'fast'"):
        postgres.restore("postgresql://u@127.0.0.1:1/db", io.BytesIO(b"x"), {"mode": "fast"})


def test_tool_versions_name_pg_dump_and_pg_restore():
    versions = postgres.tool_versions()
    assert versions["pg_dump"].startswith("pg_dump (PostgreSQL)")
    assert versions["pg_restore"].startswith("pg_restore (PostgreSQL)")


def test_fingerprint_is_taken_in_pg_dumps_snapshot_not_after_it(pg_cluster):
    pg_cluster.create_database("ds_busy")
    pg_cluster.psql("CREATE TABLE events (id int PRIMARY KEY, body text); "
                    "INSERT INTO events SELECT g, 'e' || g FROM generate_series(1, 100) g", "ds_busy")
    producer = postgres.dump(pg_cluster.dsn("ds_busy"))
    with producer:
        first = producer.read(5)  # pg_dump has started and holds its snapshot
        pg_cluster.psql("INSERT INTO events SELECT g, 'late' FROM generate_series(101, 150) g", "ds_busy")
        data = first + read_all(producer)
    recorded = producer.fingerprint
    assert recorded["per_table"]["public.events"]["rows"] == 100
    assert postgres.fingerprint(pg_cluster.dsn("ds_busy"))["per_table"]["public.events"]["rows"] == 150

    pg_cluster.create_database("ds_busy_restored")
    postgres.restore(pg_cluster.dsn("ds_busy_restored"), io.BytesIO(data))
    assert postgres.fingerprint(pg_cluster.dsn("ds_busy_restored")) == recorded


def test_columns_whose_types_have_no_binary_hash_are_hashed_in_their_text_form(pg_cluster):
    pg_cluster.create_database("ds_types")
    pg_cluster.psql("CREATE TABLE shapes (id int, at point, doc json, tags text[]); "
                    "INSERT INTO shapes VALUES (1, point(1, 2), '{\"a\": 1}', '{x}'), "
                    "(2, point(3, 4), '[]', NULL)", "ds_types")
    fp = postgres.fingerprint(pg_cluster.dsn("ds_types"))
    assert fp["per_table"]["public.shapes"]["method"] == "column-hash"
    for change in ("UPDATE shapes SET at = point(1, 3) WHERE id = 1",
                   "UPDATE shapes SET tags = '{y}' WHERE id = 1",
                   "UPDATE shapes SET tags = '{}' WHERE id = 2"):
        pg_cluster.psql(change, "ds_types")
        changed = postgres.fingerprint(pg_cluster.dsn("ds_types"))
        assert changed["per_table"]["public.shapes"]["checksum"] != fp["per_table"]["public.shapes"]["checksum"]
        fp = changed


def test_the_column_hash_tells_columns_and_nulls_apart(pg_cluster):
    pg_cluster.create_database("ds_columns")
    pg_cluster.psql("CREATE TABLE pairs (a int, b int, note text); INSERT INTO pairs VALUES (1, 2, 'x')",
                    "ds_columns")
    seen = {postgres.fingerprint(pg_cluster.dsn("ds_columns"))["per_table"]["public.pairs"]["checksum"]}
    for change in ("UPDATE pairs SET a = 2, b = 1",      # values swapped between columns
                   "UPDATE pairs SET note = NULL",       # a value became NULL
                   "UPDATE pairs SET note = ''",         # NULL became the empty string
                   "INSERT INTO pairs VALUES (NULL, NULL, NULL)"):
        pg_cluster.psql(change, "ds_columns")
        checksum = postgres.fingerprint(pg_cluster.dsn("ds_columns"))["per_table"]["public.pairs"]["checksum"]
        assert checksum not in seen, change
        seen.add(checksum)


def test_a_fingerprint_taken_the_older_way_is_reproduced_when_asked_like_it(pg_cluster):
    pg_cluster.create_database("ds_older")
    pg_cluster.psql("CREATE TABLE plain (id int, name text); INSERT INTO plain VALUES (1, 'a'), (2, 'b'); "
                    "CREATE TABLE shapes (at point); INSERT INTO shapes VALUES (point(1, 2))", "ds_older")
    dsn = pg_cluster.dsn("ds_older")
    now = postgres.fingerprint(dsn)
    older = {"per_table": {"public.plain": {"method": "record-hash"}, "public.shapes": {"method": "text-hash"}}}
    recorded = postgres.fingerprint(dsn, like=older)
    assert {t: v["method"] for t, v in recorded["per_table"].items()} == \
        {"public.plain": "record-hash", "public.shapes": "text-hash"}
    assert recorded["digest"] != now["digest"]
    assert postgres.fingerprint(dsn, like=recorded) == recorded
    assert postgres.fingerprint(dsn, like=now) == now
    pg_cluster.psql("UPDATE plain SET name = 'c' WHERE id = 2", "ds_older")
    assert postgres.fingerprint(dsn, like=recorded)["per_table"]["public.plain"] != recorded["per_table"]["public.plain"]


def test_a_data_loader_that_fails_stops_the_restore_with_its_words_before_post_data(
        pg_cluster, source_db, monkeypatch):
    """Streamed restore loads table data on parallel pg_restore processes; when one is
    refused (here: a check constraint added to a table between schema and data), the
    others are stopped, that refusal is the error, and no index is built."""
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)
    pg_cluster.create_database("ds_loader_refused")
    real_run, loaders = postgres._run_restore, []

    def run(argv, stdin=None, **kwargs):
        if any(a.startswith("--use-list=") for a in argv):
            loaders.append(argv)
        real_run(argv, stdin, **kwargs)
        if "--section=pre-data" in argv:
            pg_cluster.psql("ALTER TABLE billing.invoices ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
                            "ds_loader_refused")

    monkeypatch.setattr(postgres, "_run_restore", run)
    with pytest.raises(RestoreFailed) as caught:
        postgres.restore(pg_cluster.dsn("ds_loader_refused"), io.BytesIO(data), {"jobs": 2})
    assert len(loaders) == 2
    assert any("refuse_all" in line for line in caught.value.stderr_tail)
    assert pg_cluster.psql(INDEXES, "ds_loader_refused") == []
    assert pg_cluster.psql(TABLES, "ds_loader_refused") == []  # what it created was dropped again
    assert "as it was" in caught.value.facts["target_state"]


TABLES = ("SELECT table_schema, table_name FROM information_schema.tables "
          "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")


class Breaking(io.BytesIO):
    """A backup stream whose chunk past ``at`` fails authentication, as a damaged object
    does; ``first`` (a condition) is waited for before it fails."""

    def __init__(self, data: bytes, at: int, first=None) -> None:
        super().__init__(data)
        self.at, self.first = at, first

    def read(self, n=-1):
        if self.tell() >= self.at:
            from drfleet.backup_format.errors import EnvelopeCorrupt
            if self.first is not None:
                wait_for(self.first, timeout=60, what="the restore to create the schema")
            raise EnvelopeCorrupt("data-0000.zst.dfe", 7, "chunk 7 failed authentication")
        return super().read(min(n, 4096) if n and n > 0 else 4096)


@pytest.mark.parametrize("mode", ["stream", "spool"])
def test_a_corrupt_chunk_leaves_the_target_database_as_it_was_and_says_so(pg_cluster, source_db, mode):
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)
    db = f"ds_corrupt_{mode}"
    pg_cluster.create_database(db)
    pg_cluster.psql("CREATE TABLE public.already_here (n int); INSERT INTO already_here VALUES (1), (2)", db)
    from drfleet.backup_format.errors import EnvelopeCorrupt
    # stream mode: the schema is created while the stream arrives; fail once it is there
    created = (lambda: pg_cluster.psql("SELECT 1 FROM pg_namespace WHERE nspname = 'billing'", db)) \
        if mode == "stream" else None
    with pytest.raises(EnvelopeCorrupt) as caught:
        postgres.restore(pg_cluster.dsn(db, secret=True), Breaking(data, len(data) * 3 // 4, created),
                         {"mode": mode})
    assert pg_cluster.psql(TABLES, db) == [("public", "already_here")]
    assert pg_cluster.psql("SELECT count(*) FROM already_here", db) == [(2,)]
    assert pg_cluster.psql("SELECT nspname FROM pg_namespace WHERE nspname = 'billing'", db) == []
    state = caught.value.facts["target_state"]
    assert state.startswith("as it was") and ("dropped again" in state or mode == "spool")
    assert "target_state: as it was" in caught.value.args[0]  # what the result backend keeps


def test_a_clean_restore_that_fails_keeps_the_old_objects(pg_cluster, source_db):
    with postgres.dump(pg_cluster.dsn(source_db)) as producer:
        data = read_all(producer)
    pg_cluster.create_database("ds_clean_fails")
    postgres.restore(pg_cluster.dsn("ds_clean_fails"), io.BytesIO(data))
    pg_cluster.psql("DELETE FROM billing.invoices WHERE id > 10; "
                    "CREATE VIEW blocker AS SELECT id FROM public.customers", "ds_clean_fails")
    before = postgres.fingerprint(pg_cluster.dsn("ds_clean_fails"))
    with pytest.raises(RestoreFailed) as caught:  # the view blocks DROP TABLE customers
        postgres.restore(pg_cluster.dsn("ds_clean_fails"), io.BytesIO(data), {"clean": True})
    assert postgres.fingerprint(pg_cluster.dsn("ds_clean_fails")) == before
    assert before["per_table"]["billing.invoices"]["rows"] == 10
    assert caught.value.facts["target_state"].startswith("as it was")
