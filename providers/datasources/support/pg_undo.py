"""Undoing a PostgreSQL restore that failed part-way: drop exactly what it created.

``CatalogSnapshot.take(conn)`` records the oids of the target database's schemas,
relations, types, routines, extensions and other catalog objects before the restore
touches it. ``undo(conn, before)`` then drops, in one transaction (a savepoint per object,
so one refusal does not stop the others), every extension, schema, relation, type and
routine that was not there before -- with CASCADE, so their indexes, constraints,
triggers and rows go too -- and says what the target holds afterwards that it did not
hold before: ``"as it was"`` or the list of objects left.

The restore makes this exact: its schema step runs in one transaction (so it fails
whole), and pg_restore refuses to create an object that exists, so every object and every
row the restore wrote belongs to an object that did not exist before.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

# (kind, catalog, how to name one of its rows) -- everything a pg_dump can create
_CATALOGS = (
    ("schema", "pg_namespace", "nspname"),
    ("relation", "pg_class", "oid::regclass::text"),
    ("type", "pg_type", "oid::regtype::text"),
    ("routine", "pg_proc", "oid::regprocedure::text"),
    ("extension", "pg_extension", "extname"),
    ("operator", "pg_operator", "oid::regoperator::text"),
    ("collation", "pg_collation", "collname"),
    ("text search configuration", "pg_ts_config", "cfgname"),
    ("text search dictionary", "pg_ts_dict", "dictname"),
    ("conversion", "pg_conversion", "conname"),
    ("cast", "pg_cast", "castsource::regtype::text || ' AS ' || casttarget::regtype::text"),
    ("foreign server", "pg_foreign_server", "srvname"),
    ("foreign-data wrapper", "pg_foreign_data_wrapper", "fdwname"),
    ("event trigger", "pg_event_trigger", "evtname"),
    ("publication", "pg_publication", "pubname"),
)
_SNAPSHOT = " UNION ALL ".join(f"SELECT '{kind}', oid FROM {catalog}" for kind, catalog, _ in _CATALOGS)

# What to drop, outermost first: extensions and schemas take their members with them
_DROPS = (
    ("extension", "SELECT oid, quote_ident(extname) FROM pg_extension WHERE oid = ANY(%s)",
     "DROP EXTENSION IF EXISTS {} CASCADE"),
    ("schema", "SELECT oid, quote_ident(nspname) FROM pg_namespace WHERE oid = ANY(%s)",
     "DROP SCHEMA IF EXISTS {} CASCADE"),
    ("relation", """SELECT c.oid, c.oid::regclass::text,
                           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END
                    FROM pg_class c WHERE c.oid = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')""",
     "DROP {kind} IF EXISTS {} CASCADE"),
    ("type", """SELECT t.oid, t.oid::regtype::text, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END
                FROM pg_type t WHERE t.oid = ANY(%s) AND t.typrelid = 0
                  AND NOT (t.typcategory = 'A' AND t.typelem <> 0)""",
     "DROP {kind} IF EXISTS {} CASCADE"),
    ("routine", """SELECT p.oid, p.oid::regprocedure::text,
                          CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END
                   FROM pg_proc p WHERE p.oid = ANY(%s)""",
     "DROP {kind} IF EXISTS {} CASCADE"),
)


@dataclass(frozen=True)
class CatalogSnapshot:
    """The oids of every catalog object of one database at one moment, by kind."""

    oids: frozenset[tuple[str, int]]

    @classmethod
    def take(cls, conn: str) -> "CatalogSnapshot":
        """Raises psycopg.Error when the database cannot be read."""
        with psycopg.connect(conn, connect_timeout=10, autocommit=True) as db:
            return cls(frozenset((kind, int(oid)) for kind, oid in db.execute(_SNAPSHOT).fetchall()))

    def new_since(self, before: "CatalogSnapshot") -> dict[str, list[int]]:
        created: dict[str, list[int]] = {}
        for kind, oid in sorted(self.oids - before.oids):
            created.setdefault(kind, []).append(oid)
        return created


def undo(conn: str, before: CatalogSnapshot) -> tuple[int, list[str]]:
    """Drop what was created in ``conn`` since ``before``; returns (how many objects were
    new, descriptions of what is still new afterwards). Raises psycopg.Error when the
    database cannot be reached."""
    created = CatalogSnapshot.take(conn).new_since(before)
    count = sum(len(oids) for oids in created.values())
    if not count:
        return 0, []
    with psycopg.connect(conn, connect_timeout=10) as db:
        for kind, query, template in _DROPS:
            oids = created.get(kind, [])
            if not oids:
                continue
            for row in db.execute(query, [oids]).fetchall():
                name, object_kind = row[1], (row[2] if len(row) > 2 else None)
                statement = template.replace("{kind}", object_kind or "")
                try:
                    with db.transaction():  # a savepoint: one refusal leaves the others to run
                        db.execute(sql.SQL(statement).format(sql.SQL(name)))
                except psycopg.Error:
                    continue
    return count, left_since(conn, before)


def left_since(conn: str, before: CatalogSnapshot) -> list[str]:
    """What ``conn`` holds that it did not hold at ``before``, named ("table public.x")."""
    created = CatalogSnapshot.take(conn).new_since(before)
    if not created:
        return []
    names = []
    with psycopg.connect(conn, connect_timeout=10, autocommit=True) as db:
        for kind, catalog, label in _CATALOGS:
            oids = created.get(kind)
            if oids:
                rows = db.execute(f"SELECT {label} FROM {catalog} WHERE oid = ANY(%s) ORDER BY 1", [oids])
                names += [f"{kind} {name}" for (name,) in rows.fetchall()]
    return names
