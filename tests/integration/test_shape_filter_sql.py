"""The shape filter's SQL against a real Postgres: for random rows and random where clauses, the
initial query's generated WHERE selects exactly the rows the Rust evaluator accepts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from electric_trio._native import ShapeEvaluationError, ShapeFilter, ShapeFilterError
from electric_trio.pg import Connection, PgError, connect

COLUMNS = [
    ("id", 23),
    ("i2", 21),
    ("i4", 23),
    ("i8", 20),
    ("f4", 700),
    ("f8", 701),
    ("t", 25),
    ("v", 1043),
    ("b", 16),
    ("ts", 1114),
    ("tz", 1184),
    ("d", 1082),
    ("tm", 1083),
    ("u", 2950),
]
CAST = {23: "int4", 20: "int8", 701: "float8", 25: "text", 1043: "varchar", 16: "bool"}
CAST |= {1184: "timestamptz", 1082: "date", 2950: "uuid", 21: "int2", 700: "float4"}
CAST |= {1114: "timestamp", 1083: "time"}
TABLE = (
    f"CREATE TEMP TABLE t ({', '.join(f'{c} {CAST[oid]}' for c, oid in COLUMNS)}, PRIMARY KEY (id))"
)
UUIDS = [
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
]
TEXT_ALPHABET = "aAbB_%\\! é'"

Row = dict[str, str | None]


def float_text(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    return repr(f)


def quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def nullable(s: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), s, s)


# ---- rows (every value in Postgres's text form) -------------------------------------------------

small_ints = st.integers(-20, 20).map(str)
VALUES: dict[str, st.SearchStrategy[str | None]] = {
    "i2": nullable(st.one_of(small_ints, small_ints, st.sampled_from(["32767", "-32768"]))),
    "f4": nullable(
        st.one_of(
            st.floats(width=32).map(float_text),
            st.sampled_from([0.1, 1.5, -0.0, 3e38, math.nan, -math.inf]).map(float_text),
        )
    ),
    "ts": nullable(
        st.one_of(
            st.datetimes(dt.datetime(2019, 1, 1), dt.datetime(2021, 12, 31)).map(
                lambda d: d.isoformat(sep=" ")
            ),
            st.sampled_from(["2020-01-01 00:00:00", "infinity"]),
        )
    ),
    "tm": nullable(
        st.one_of(st.times().map(dt.time.isoformat), st.sampled_from(["10:00:00", "00:00:00"]))
    ),
    "i4": nullable(
        st.one_of(small_ints, small_ints, st.sampled_from(["2147483647", "-2147483648"]))
    ),
    "i8": nullable(
        st.one_of(
            small_ints, st.sampled_from(["9223372036854775807", "-9223372036854775808", "10"])
        )
    ),
    "f8": nullable(
        st.one_of(
            st.floats(-100, 100).map(lambda f: float_text(round(f, 2))),
            st.sampled_from(
                [0.0, -0.0, 0.5, 1.5, -2.25, 1e20, 1e-5, math.nan, math.inf, -math.inf]
            ).map(float_text),
            st.floats(width=64).map(float_text),
        )
    ),
    "t": nullable(st.text(TEXT_ALPHABET, max_size=5)),
    "v": nullable(st.text(TEXT_ALPHABET, max_size=5)),
    "b": nullable(st.sampled_from(["t", "f"])),
    "tz": nullable(
        st.one_of(
            st.datetimes(
                dt.datetime(2019, 1, 1), dt.datetime(2021, 12, 31), timezones=st.just(dt.UTC)
            ).map(lambda d: d.isoformat(sep=" ")),
            st.sampled_from(["2020-01-01 00:00:00+00", "infinity", "-infinity"]),
        )
    ),
    "d": nullable(
        st.one_of(
            st.dates(dt.date(2019, 1, 1), dt.date(2021, 12, 31)).map(dt.date.isoformat),
            st.sampled_from(["2020-01-01", "infinity"]),
        )
    ),
    "u": nullable(st.one_of(st.sampled_from(UUIDS), st.uuids().map(str))),
}


@st.composite
def rows(draw: st.DrawFn) -> list[Row]:
    n = draw(st.integers(1, 12))
    return [{"id": str(i), **{c: draw(s) for c, s in VALUES.items()}} for i in range(n)]


# ---- where clauses from a grammar ---------------------------------------------------------------

int_lit = st.one_of(
    st.integers(-5, 5).map(str), st.sampled_from(["0", "100", "2147483647", "3000000000"])
)
dec_lit = st.sampled_from(["1.5", "0.25", "-2.5", "1e3", "2.50", "0.1", "-0.0"])
float_lit = st.sampled_from(
    ["'1.5'::float8", "'NaN'::float8", "'-Infinity'::float8", "1e20::float8"]
)
text_lit = st.text(TEXT_ALPHABET, max_size=4).map(quote)
date_lit = st.one_of(
    st.dates(dt.date(2019, 1, 1), dt.date(2021, 12, 31)).map(lambda d: quote(d.isoformat())),
    st.sampled_from(["date '2020-02-29'", "'infinity'", "'2020-01-01T10:00:00.000Z'"]),
)
tz_lit = st.sampled_from(
    [
        "'2020-01-01T00:00:00.000Z'",
        "'2020-06-01 12:00:00+02'",
        "'2020-01-01'",
        "'2021-03-04 05:06:07.123456+00'",
        "'-infinity'",
    ]
)
uuid_lit = st.sampled_from(UUIDS).map(quote)


def binary(ops: list[str], operand: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(operand, st.sampled_from(ops), operand).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )


int_base = st.one_of(st.sampled_from(["this.i4", "this.i8", "this.id", "i4", "this.i2"]), int_lit)
int_expr = st.recursive(
    int_base,
    lambda e: st.one_of(
        binary(["+", "-", "*", "/", "%"], e),
        e.map(lambda x: f"-{x}"),
        e.map(lambda x: f"abs({x})"),
        st.just("length(this.t)"),
        date_lit.map(lambda d: f"(this.d - {d})"),
    ),
    max_leaves=3,
)
num_expr = st.one_of(
    int_expr,
    st.recursive(
        st.one_of(st.sampled_from(["this.f8", "this.f4"]), dec_lit, float_lit, int_base),
        lambda e: st.one_of(binary(["+", "-", "*", "/"], e), e.map(lambda x: f"-{x}")),
        max_leaves=3,
    ),
)
text_expr = st.recursive(
    st.one_of(st.sampled_from(["this.t", "this.v", 'this."t"']), text_lit),
    lambda e: st.one_of(
        e.map(lambda x: f"lower({x})"),
        e.map(lambda x: f"upper({x})"),
        binary(["||"], e),
        st.sampled_from(
            [
                "this.i2::text",
                "this.f4::text",
                "this.ts::text",
                "this.tm::text",
                "this.i4::text",
                "this.f8::text",
                "this.d::text",
                "this.tz::text",
                "this.b::text",
                "this.u::text",
            ]
        ),
    ),
    max_leaves=3,
)
date_expr = st.one_of(
    st.just("this.d"),
    date_lit,
    int_lit.map(lambda n: f"(this.d + {n})"),
    st.just("this.tz::date"),
    st.just("this.ts::date"),
)
tz_expr = st.one_of(
    st.sampled_from(["this.tz", "this.ts", "this.d::timestamptz", "this.d", "this.tz::timestamp"]),
    tz_lit,
)
time_expr = st.one_of(
    st.sampled_from(["this.tm", "this.ts::time", "this.tz::time", "'10:00'", "'23:59:59.999999'"]),
)
cmp = st.sampled_from(["=", "<>", "!=", "<", ">", "<=", ">="])
pattern = st.text("aAb_%\\!é", max_size=4).map(quote)


def compare(operand: st.SearchStrategy[str], other: st.SearchStrategy[str] | None = None):
    return st.tuples(operand, cmp, other or operand).map(lambda t: f"{t[0]} {t[1]} {t[2]}")


def in_list(
    operand: st.SearchStrategy[str], item: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    return st.tuples(
        operand,
        st.sampled_from(["IN", "NOT IN"]),
        st.lists(st.one_of(item, item, item, st.just("NULL")), min_size=1, max_size=4),
    ).map(lambda t: f"{t[0]} {t[1]} ({', '.join(t[2])})")


column = st.sampled_from([f"this.{c}" for c, _ in COLUMNS])
atom = st.one_of(
    compare(num_expr),
    compare(text_expr),
    compare(date_expr),
    compare(tz_expr),
    compare(time_expr),
    compare(st.sampled_from(["this.u", *(quote(u) for u in UUIDS)])),
    compare(st.sampled_from(["this.b", "TRUE", "FALSE", "NULL::bool"])),
    st.tuples(column, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
    st.tuples(
        st.just("this.b"),
        st.sampled_from(["IS TRUE", "IS NOT TRUE", "IS FALSE", "IS NOT FALSE", "IS UNKNOWN"]),
    ).map(" ".join),
    st.tuples(
        text_expr,
        st.sampled_from(["LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"]),
        pattern,
        st.sampled_from(["", " ESCAPE '!'", " ESCAPE ''"]),
    ).map(lambda t: f"{t[0]} {t[1]} {t[2]}{t[3]}"),
    st.tuples(text_expr, text_lit).map(lambda t: f"starts_with({t[0]}, {t[1]})"),
    in_list(int_expr, int_lit),
    in_list(text_expr, text_lit),
    in_list(st.just("this.d"), date_lit),
    st.tuples(num_expr, st.sampled_from(["BETWEEN", "NOT BETWEEN"]), int_lit, dec_lit).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} AND {t[3]}"
    ),
    st.tuples(
        st.sampled_from(["this.i4", "this.t", "this.b", "this.d"]),
        st.sampled_from(["IS DISTINCT FROM", "IS NOT DISTINCT FROM"]),
        st.sampled_from(["this.i8", "this.v", "NULL", "this.b", "'2020-01-01'"]),
    ).map(" ".join),
    st.sampled_from(["this.b", "TRUE", "FALSE", "NULL"]),
)
clauses = st.recursive(
    atom,
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["AND", "OR"]), c).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        c.map(lambda x: f"NOT ({x})"),
    ),
    max_leaves=4,
)


# ---- the property -------------------------------------------------------------------------------


@asynccontextmanager
async def table_with(pg_url: str, data: list[Row]) -> AsyncIterator[tuple[Connection, list[Row]]]:
    """A table holding `data`, and its rows as Postgres prints them (as a replication stream
    carries them: float4 with its own shortest digits, timestamps normalised...)."""
    async with await connect(pg_url) as conn:
        await conn.execute(TABLE)
        names = [c for c, _ in COLUMNS]
        width = len(names)
        values = ", ".join(
            "("
            + ", ".join(f"${r * width + i + 1}::{CAST[oid]}" for i, (_, oid) in enumerate(COLUMNS))
            + ")"
            for r in range(len(data))
        )
        params = [row.get(c) for row in data for c in names]
        await conn.execute(f"INSERT INTO t VALUES {values}", *params)
        printed = await conn.fetch(f"SELECT {', '.join(f'{c}::text' for c in names)} FROM t")
        yield conn, [dict(zip(names, r, strict=True)) for r in printed]


async def select(conn: Connection, sql: str, params: list[str | None]) -> set[int] | PgError:
    """The ids a WHERE selects, or the data exception (overflow, division by zero...) raised."""
    try:
        return {r[0] for r in await conn.fetch(f"SELECT id FROM t AS this WHERE {sql}", *params)}
    except PgError as e:
        if not (e.sqlstate or "").startswith("22"):
            raise
        return e


async def check(conn: Connection, data: list[Row], clause: str) -> str:
    """Compares Postgres and the evaluator on one clause; returns how it went."""
    try:
        f = ShapeFilter.compile(clause, COLUMNS)
    except ShapeFilterError:
        return "rejected"
    accepted: set[int] = set()
    failed: set[int] = set()
    for row in data:
        try:
            if f.matches(dict(row)):
                accepted.add(int(row["id"] or 0))
        except ShapeEvaluationError:
            failed.add(int(row["id"] or 0))
    sql, params = f.to_sql("this", 1)
    values = [p for p, _ in params]
    # Evaluated in the clause's order (`IS TRUE` keeps the planner from reordering the
    # top-level conjuncts), Postgres fails exactly where the evaluator does.
    ordered = await select(conn, f"({sql}) IS TRUE", values)
    if isinstance(ordered, PgError):
        assert failed, f"Postgres failed where the evaluator did not: {clause}\n{sql}\n{ordered}"
    else:
        assert not failed, f"the evaluator failed where Postgres did not: {clause}\n{sql}"
        assert ordered == accepted, (clause, sql, params, data)
    # The fragment as the initial query uses it: the same rows, unless a row fails (Postgres
    # may then evaluate conjuncts in another order, failing on rows the evaluator passed over
    # or the other way round).
    plain = await select(conn, sql, values)
    if isinstance(plain, PgError):
        return "error"
    assert plain - failed == accepted, (clause, sql, params, data)
    return "error" if failed else "compared"


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=rows(), where=st.lists(clauses, min_size=4, max_size=4))
async def test_generated_sql_selects_what_the_evaluator_accepts(
    pg_url: str, data: list[Row], where: list[str]
) -> None:
    async with table_with(pg_url, data) as (conn, printed):
        for clause in where:
            event(await check(conn, printed, clause))


# ---- fixed cases --------------------------------------------------------------------------------

FIXED_ROWS: list[Row] = [
    {"id": "1", "i4": "1", "i8": "10", "f8": "1.5", "t": "Project 1", "v": "x", "b": "t",
     "tz": "2024-01-01 00:00:00+00", "d": "2024-01-01", "u": UUIDS[0]},
    {"id": "2", "i4": "3", "i8": None, "f8": "2.75", "t": "sentinel-a", "v": "X", "b": "f",
     "tz": "2024-06-01 12:00:00+00", "d": "2024-06-01", "u": UUIDS[1]},
    {"id": "3", "i4": None, "i8": "-5", "f8": "NaN", "t": "it's", "v": None, "b": None,
     "tz": None, "d": None, "u": None},
]  # fmt: skip


@pytest.mark.parametrize(
    ("clause", "ids"),
    [
        # What the official client's DAL generates from filter objects.
        ("(this.\"t\" = 'Project 1')", {1}),
        ('(this."i4" != 3)', {1}),
        ('(this."t" != \'Project 1\') AND (this."b" = true)', set()),
        ('(this."f8" > 1.5)', {2, 3}),
        ('(this."f8" >= 1.5) AND (this."f8" < 2.8)', {1, 2}),
        ("(this.\"tz\" >= '2024-03-01T00:00:00.000Z')", {2}),
        ('(this."i4" IN (1, 3))', {1, 2}),
        ("(this.\"t\" LIKE 'sentinel%')", {2}),
        ("this.t ILIKE 'PROJ%'", {1}),
        ("this.t NOT LIKE ''", {1, 2, 3}),
        ("this.t = 'it''s'", {3}),
        ("this.i4 / 2 = 1", {2}),
        ("this.i4 * 2 % 4 = 2", {1, 2}),
        ("this.i8 IS NULL OR this.v = 'X'", {2}),
        ("this.u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", {1}),
        ("this.d + 1 = '2024-01-02' OR this.d - '2024-01-01' = 152", {1, 2}),
        ("this.tz::date = this.d", {1, 2}),
        ("this.tz::text LIKE '2024-06-01 12:00:00+00'", {2}),
        ("", {1, 2, 3}),
        # Injection attempts are literals: they select nothing and break nothing.
        ("this.t = '''; DROP TABLE t; --'", set()),
        ("this.t = ''') OR 1=1 --'", set()),
    ],
)
async def test_fixed_clauses(pg_url: str, clause: str, ids: set[int]) -> None:
    async with table_with(pg_url, FIXED_ROWS) as (conn, printed):
        f = ShapeFilter.compile(clause, COLUMNS)
        assert {int(r["id"] or 0) for r in FIXED_ROWS if f.matches(dict(r))} == ids
        assert await check(conn, printed, clause) == "compared"
        assert await conn.fetchval("SELECT count(*) FROM t") == len(FIXED_ROWS)


@pytest.mark.parametrize(
    "clause",
    [
        "1=1; DROP TABLE t",
        "') OR 1=1 --",
        "this.t = 'x'; DELETE FROM t",
        "this.t = $1",
        "$$x$$ = this.t",
    ],
)
def test_injection_attempts_do_not_parse(clause: str) -> None:
    with pytest.raises(ShapeFilterError):
        ShapeFilter.compile(clause, COLUMNS)


async def test_enum_columns(pg_url: str) -> None:
    async with await connect(pg_url) as conn:
        await conn.execute("DROP TYPE IF EXISTS shape_mood CASCADE")
        await conn.execute("CREATE TYPE shape_mood AS ENUM ('sad', 'ok', 'happy')")
        await conn.execute("CREATE TEMP TABLE e (id int4 PRIMARY KEY, m shape_mood)")
        await conn.execute("INSERT INTO e VALUES (1, 'sad'), (2, 'ok'), (3, 'happy'), (4, NULL)")
        oid = await conn.fetchval("SELECT 'shape_mood'::regtype::oid::int4")
        columns = [("id", 23), ("m", oid)]
        enums = {"m": ["sad", "ok", "happy"]}
        rows = [{"id": 1, "m": "sad"}, {"id": 2, "m": "ok"}, {"id": 3, "m": "happy"}, {"id": 4}]
        for clause, ids in [
            ("this.m = 'ok'", {2}),
            ("this.m <> 'ok'", {1, 3}),
            ("this.m > 'sad'", {2, 3}),
            ("this.m IN ('happy', 'sad')", {1, 3}),
            ("this.m::text LIKE '%a%'", {1, 3}),
            ("this.m IS NULL", {4}),
        ]:
            f = ShapeFilter.compile(clause, columns, enums)
            assert {r["id"] for r in rows if f.matches(r)} == ids, clause
            sql, params = f.to_sql("this")
            assert all(t == oid for p, t in params if p in ("ok", "sad", "happy"))
            got = await conn.fetch(f"SELECT id FROM e AS this WHERE {sql}", *(p for p, _ in params))
            assert {r[0] for r in got} == ids, clause
        with pytest.raises(ShapeFilterError, match="invalid input value for enum"):
            ShapeFilter.compile("this.m = 'angry'", columns, enums)
        await conn.execute("DROP TYPE shape_mood CASCADE")


async def test_session_time_zone_does_not_matter(pg_url: str) -> None:
    # Conversions Postgres makes in the session's zone are generated in UTC, like the evaluator.
    async with table_with(pg_url, FIXED_ROWS) as (conn, printed):
        await conn.execute("SET TimeZone = 'America/New_York'")
        for clause in [
            "this.d::timestamptz = '2024-01-01T00:00:00Z'",
            "this.tz::date = '2024-06-01'",
            "this.tz::text = '2024-01-01 00:00:00+00'",
            "this.tz::timestamp = '2024-06-01 12:00'",
            "this.d < this.tz",
        ]:
            assert await check(conn, printed, clause) == "compared", clause
