"""The proxy's ``prisma`` user (server-behaviour.md §10, scenarios 04.02 and 04.04): Prisma's
introspection queries, sent as Prisma 4.8 and 5.2 send them (extended protocol, a ``name[]`` of
namespaces), are answered from the electrified schema alone, and Postgres is never asked.

Prisma's own engines cannot be downloaded here, so ``prisma db pull`` itself does not run: these
tests speak to the proxy with psycopg, at the wire level, with the queries Prisma sends.
"""

from __future__ import annotations

import struct
from typing import Any

import psycopg
import pytest
import trio
from psycopg import generators, pq
from test_proxy import Running, db, out, run_psql, start, sync

from electric_trio.pg import connect
from prisma_queries import PRISMA_QUERIES

__all__ = ["db"]

# Scenario 04.02's second migration (without the tables it does not electrify), 04.04's two
# foreign keys to one table, and an enum.
MIGRATION = """
SET electric.__constraint_validation_enabled = false;
BEGIN;
CALL electric.migration_version('20230608134524');
CREATE TABLE public.checked (
    id text PRIMARY KEY,
    value TEXT NOT NULL,
    count int4 CONSTRAINT count_check CHECK ((count < 100) AND (count > 10)),
    number int4,
    CONSTRAINT combined CHECK (number + count < 200)
);
CREATE TABLE public.pointy (
    id text PRIMARY KEY,
    checked_id text NOT NULL REFERENCES public.checked (id)
);
CREATE UNIQUE INDEX checked_fk_idx ON public.checked (id, value);
CREATE TABLE public.pointy2 (
    id text PRIMARY KEY,
    checked_id text NOT NULL,
    checked_value text NOT NULL,
    amount smallint,
    code smallint,
    FOREIGN KEY (checked_id, checked_value) REFERENCES public.checked (id, value),
    UNIQUE (amount, code)
);
ALTER TABLE public.checked ENABLE ELECTRIC;
ALTER TABLE public.pointy ENABLE ELECTRIC;
ALTER TABLE public.pointy2 ENABLE ELECTRIC;
COMMIT;
BEGIN;
CALL electric.migration_version('20230608134525');
CREATE TABLE "Vertex" (
    "id" TEXT NOT NULL,
    "createdAt" TIMESTAMP NOT NULL,
    "updatedAt" TIMESTAMP NOT NULL,
    CONSTRAINT "Vertex_pkey" PRIMARY KEY ("id")
);
CREATE TABLE "Edge" (
    "id" TEXT NOT NULL,
    "confidence" DOUBLE PRECISION NOT NULL,
    "createdAt" TIMESTAMP NOT NULL,
    "updatedAt" TIMESTAMP NOT NULL,
    "fromVertexId" TEXT NOT NULL REFERENCES "Vertex"("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    "toVertexId" TEXT NOT NULL REFERENCES "Vertex"("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Edge_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "Vertex" ENABLE ELECTRIC;
ALTER TABLE "Edge" ENABLE ELECTRIC;
COMMIT;
BEGIN;
CALL electric.migration_version('20230608134526');
CREATE TYPE oses AS ENUM ('linux', 'macos', 'windows');
CREATE TABLE public.manuals (id text PRIMARY KEY, os oses NOT NULL, manual_url varchar);
ALTER TABLE public.manuals ENABLE ELECTRIC;
COMMIT;
"""

ELECTRIFIED = ["Edge", "Vertex", "checked", "manuals", "pointy", "pointy2"]


@pytest.fixture
async def proxy(db: str, nursery: trio.Nursery) -> Running:
    running = await start(nursery, db)
    # a table Electric knows nothing about, made straight in Postgres
    async with await connect(db) as conn:
        await conn.execute("CREATE TABLE secret (id text PRIMARY KEY, payload text)")
    return running


async def migrated(running: Running) -> Running:
    proc = await run_psql(running.dsn(), MIGRATION)
    assert proc.returncode == 0, out(proc)
    history = running.service.migrations
    assert history is not None
    with trio.fail_after(30):
        while history.version != "20230608134526":  # noqa: ASYNC110 (the WAL brings it)
            await trio.sleep(0.02)
    return running


def prisma_sql(name: str) -> str:
    """Prisma's query as psycopg takes it: ``$1`` (used twice by some) becomes a named
    placeholder, which psycopg sends back as ``$1``."""
    return PRISMA_QUERIES[name].replace("$1", "%(ns)s")


def fetch(
    conn: psycopg.Connection[Any], name: str, *, binary: bool = False
) -> list[tuple[Any, ...]]:
    with conn.cursor(binary=binary) as cur:
        sql = prisma_sql(name)
        params = {"ns": "public"} if name == "NamespaceVersionV5_2" else {"ns": ["public"]}
        cur.execute(sql, params if "%(ns)s" in sql else None)
        return cur.fetchall()


def texts(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with bytes (a type psycopg has no binary loader for) as text."""
    return [tuple(v.decode() if isinstance(v, bytes) else v for v in row) for row in rows]


async def test_prisma_5_2_introspection_sees_only_electrified_tables(proxy: Running) -> None:
    running = await migrated(proxy)
    async with await connect(running.db_url) as conn:
        own = await conn.fetch(
            PRISMA_QUERIES["ConstraintV5_2"].replace("$1", "ARRAY['public']::name[]")
        )
    own_checks = [tuple(r) for r in own if r[1] in ELECTRIFIED and r[3] == "c"]

    def check() -> None:
        with psycopg.connect(running.dsn(user="prisma"), autocommit=True) as conn:
            for binary in (False, True):
                assert texts(fetch(conn, "NamespaceVersionV5_2", binary=binary)) == [
                    (True, "PostgreSQL 14.9 Electric", 140009)
                ]
                assert fetch(conn, "NamespaceV5_2", binary=binary) == [("public",)]
                tables = texts(fetch(conn, "TableV5_2", binary=binary))
                assert [t[0] for t in tables] == ELECTRIFIED  # no "secret"
                assert tables[0] == ("Edge", "public", False, False, False, None, None)

                columns = texts(fetch(conn, "ColumnV5_2", binary=binary))
                edge = {c[2]: c for c in columns if c[1] == "Edge"}
                assert list(edge) == [
                    "id",
                    "confidence",
                    "createdAt",
                    "updatedAt",
                    "fromVertexId",
                    "toVertexId",
                ]
                # 04.04: Float, DateTime @db.Timestamp(6)
                assert edge["confidence"][3:] == (
                    "double precision",
                    53,
                    None,
                    2,
                    None,
                    "double precision",
                    "pg_catalog",
                    "float8",
                    None,
                    "NO",
                    "NO",
                    None,
                    None,
                )
                assert edge["createdAt"][3] == "timestamp without time zone"
                assert edge["createdAt"][7] == 6
                assert edge["createdAt"][10] == "timestamp"
                pointy2 = {c[2]: c for c in columns if c[1] == "pointy2"}
                assert pointy2["amount"][3:9] == ("smallint", 16, 0, 2, None, "smallint")
                assert pointy2["amount"][12] == "YES"
                assert pointy2["id"][12] == "NO"  # primary key
                manuals = {c[2]: c for c in columns if c[1] == "manuals"}
                assert manuals["os"][3:11] == (
                    "oses",
                    None,
                    None,
                    None,
                    None,
                    "USER-DEFINED",
                    "public",
                    "oses",
                )
                assert manuals["manual_url"][3] == "character varying"
                assert manuals["manual_url"][10] == "varchar"
                assert not [c for c in columns if c[1] == "secret"]

                fks = texts(fetch(conn, "ForeignKeyV5_2", binary=binary))
                edge_fks = [fk for fk in fks if fk[10] == "Edge"]
                # 04.04: two foreign keys to one table are two constraints
                assert [(fk[1], fk[2], fk[3], fk[4], fk[5], fk[7]) for fk in edge_fks] == [
                    ("fromVertexId", "Vertex", "id", "r", "c", "Edge_fromVertexId_fkey"),
                    ("toVertexId", "Vertex", "id", "r", "c", "Edge_toVertexId_fkey"),
                ]
                assert edge_fks[0][0] != edge_fks[1][0]
                assert (edge_fks[0][8], edge_fks[0][9]) == (1, 5)  # attnums: Vertex.id, Edge.5
                composite = [fk for fk in fks if fk[10] == "pointy2"]
                assert [(fk[1], fk[3]) for fk in composite] == [
                    ("checked_id", "id"),
                    ("checked_value", "value"),
                ]
                assert composite[0][0] == composite[1][0]
                assert [fk[7] for fk in fks if fk[10] == "pointy"] == ["pointy_checked_id_fkey"]

                indexes = texts(fetch(conn, "IndexV5_2", binary=binary))
                checked = [i for i in indexes if i[2] == "checked"]
                btree = ("text_ops", True, "btree")
                # 04.02: @@unique([id, value], map: "checked_fk_idx") and @id
                assert [i[:10] for i in checked] == [
                    ("public", "checked_fk_idx", "checked", "id", True, False, 0, *btree),
                    ("public", "checked_fk_idx", "checked", "value", True, False, 1, *btree),
                    ("public", "checked_pkey", "checked", "id", True, True, 0, *btree),
                ]
                assert [(i[1], i[3], i[4], i[5]) for i in indexes if i[2] == "pointy2"] == [
                    ("pointy2_amount_code_key", "amount", True, False),
                    ("pointy2_amount_code_key", "code", True, False),
                    ("pointy2_pkey", "id", True, True),
                ]
                assert [i[1] for i in indexes if i[2] == "Vertex"] == ["Vertex_pkey"]

                assert texts(fetch(conn, "TypeV5_2", binary=binary)) == [
                    ("oses", "linux", "public", None),
                    ("oses", "macos", "public", None),
                    ("oses", "windows", "public", None),
                ]
                for empty in ("ViewV5_2", "FunctionV5_2", "ExtensionV5_2", "SequenceV5_2"):
                    assert fetch(conn, empty, binary=binary) == [], empty
                # 04.02's CHECK constraints, exactly as Postgres itself reports them
                checks = texts(fetch(conn, "ConstraintV5_2", binary=binary))
                assert [c[:4] for c in checks] == [
                    ("public", "checked", "combined", "c"),
                    ("public", "checked", "count_check", "c"),
                ]
                assert checks == own_checks
                assert fetch(conn, "VersionV5_2", binary=binary) == [("PostgreSQL 14.9 Electric",)]

    await sync(check)


async def test_prisma_4_8_introspection(proxy: Running) -> None:
    running = await migrated(proxy)

    def check() -> None:
        with psycopg.connect(running.dsn(user="prisma"), autocommit=True) as conn:
            assert fetch(conn, "TableListV4_8") == [(t, "public") for t in ELECTRIFIED]
            columns = fetch(conn, "ColumnV4_8")
            assert len(columns[0]) == 14
            assert ("public", "Vertex", "createdAt", "timestamp without time zone") in [
                c[:4] for c in columns
            ]
            fks = fetch(conn, "ForeignKeyV4_8")
            assert len(fks[0]) == 12
            assert [fk[7] for fk in fks] == [
                "Edge_fromVertexId_fkey",
                "Edge_toVertexId_fkey",
                "pointy_checked_id_fkey",
                "pointy2_checked_id_checked_value_fkey",
                "pointy2_checked_id_checked_value_fkey",
            ]
            indexes = fetch(conn, "IndexV4_8")
            assert len(indexes[0]) == 11
            assert ("checked_fk_idx", "value") in [(i[1], i[3]) for i in indexes]
            assert fetch(conn, "TypeV4_8") == [
                ("oses", "linux", "public"),
                ("oses", "macos", "public"),
                ("oses", "windows", "public"),
            ]
            assert fetch(conn, "ViewV4_8") == []

    await sync(check)


def results(conn: psycopg.Connection[Any]) -> list[pq.abc.PGresult]:
    """The results of the request just sent on ``conn.pgconn`` (libpq's own blocking calls
    would hold the GIL the proxy needs to answer)."""
    return conn.wait(generators.execute(conn.pgconn))


def name_array(names: list[str]) -> bytes:
    """A ``name[]`` in binary, as tokio-postgres (Prisma's driver) sends it."""
    head = struct.pack("!iiIii", 1, 0, 19, len(names), 1)
    return head + b"".join(struct.pack("!i", len(n)) + n.encode() for n in names)


async def test_prepared_statements_as_prisma_sends_them(proxy: Running) -> None:
    """Named statements described before they are bound, binary parameters and results: the
    way Prisma's driver asks."""
    running = await migrated(proxy)

    def check() -> None:
        with psycopg.connect(running.dsn(user="prisma"), autocommit=True) as conn:
            pgconn = conn.pgconn
            pgconn.send_prepare(b"s1", PRISMA_QUERIES["ForeignKeyV5_2"].encode(), [1003])
            [res] = results(conn)
            assert res.status == pq.ExecStatus.COMMAND_OK
            pgconn.send_describe_prepared(b"s1")
            [desc] = results(conn)
            assert desc.nparams == 1
            assert desc.param_type(0) == 1003
            assert [desc.fname(i) for i in range(desc.nfields)][:4] == [
                b"con_id",
                b"child_column",
                b"parent_table",
                b"parent_column",
            ]
            assert [desc.ftype(i) for i in range(desc.nfields)] == [
                *(26, 19, 19, 19, 18, 18, 19, 19, 21, 21, 19, 19, 16, 16)
            ]

            def execute(namespaces: list[str]) -> pq.abc.PGresult:
                pgconn.send_query_prepared(b"s1", [name_array(namespaces)], [1], result_format=1)
                [res] = results(conn)
                assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
                return res

            res = execute(["public"])
            assert res.ntuples == 5
            assert res.get_value(0, 1) == b"fromVertexId"
            assert res.get_value(0, 4) == b"r"
            assert res.get_value(0, 8) == struct.pack("!h", 1)
            assert res.get_value(0, 12) == b"\x00"
            # a namespace that has no electrified table has nothing
            assert execute(["other"]).ntuples == 0
            assert execute([]).ntuples == 0
            pgconn.send_query(b"DEALLOCATE s1")
            [res] = results(conn)
            assert res.status == pq.ExecStatus.COMMAND_OK

    await sync(check)


async def test_other_statements_get_an_empty_answer_and_postgres_is_never_asked(
    proxy: Running,
) -> None:
    running = await migrated(proxy)
    dsn = running.dsn(user="prisma") + "&application_name=prisma-introspection-test"

    def check() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # simple protocol, several statements: one CommandComplete each, no rows
            conn.pgconn.send_query(b"SET NAMES 'UTF-8'; SELECT * FROM secret")
            assert [r.command_status for r in results(conn)] == [b"SET", b"SELECT 0"]
            assert conn.execute("SET NAMES 'UTF-8'").statusmessage == "SET"
            # an unknown SELECT in the extended protocol is an error, not a guess
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="does not recognise"):
                conn.execute("SELECT * FROM secret WHERE id = %s", ["x"])
            assert fetch(conn, "NamespaceV5_2") == [("public",)]  # the session goes on
            with pytest.raises(psycopg.errors.SyntaxError):
                conn.execute("SELEC nonsense")
            assert [t[0] for t in fetch(conn, "TableListV4_8")] == ELECTRIFIED
            # while the prisma session is open, Postgres has no session of it
            with psycopg.connect(running.db_url, autocommit=True) as admin:
                seen = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = 'prisma-introspection-test'"
                ).fetchone()
            assert seen == (0,)

    await sync(check)


async def test_empty_electrified_schema_is_an_empty_database(proxy: Running) -> None:
    """Before anything is electrified (04.02's first ``prisma db pull``): no namespace, no
    tables, although Postgres has one."""

    def check() -> None:
        with psycopg.connect(proxy.dsn(user="prisma"), autocommit=True) as conn:
            assert texts(fetch(conn, "NamespaceVersionV5_2"))[0][0] is False
            assert fetch(conn, "NamespaceV5_2") == []
            assert fetch(conn, "TableV5_2") == []
            assert fetch(conn, "ColumnV5_2") == []

    await sync(check)
