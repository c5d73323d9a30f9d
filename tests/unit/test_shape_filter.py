"""The native shape filter from Python: compiling, errors with positions, rows of Python values,
three-valued results and the generated SQL."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from electric_trio._native import (
    ShapeEvaluationError,
    ShapeFilter,
    ShapeFilterError,
    ValueDecodeError,
)
from electric_trio.errors import ElectricError

COLUMNS = [
    ("id", 23),
    ("n", 20),
    ("f", 701),
    ("name", 25),
    ("done", 16),
    ("at", 1184),
    ("day", 1082),
    ("ref", 2950),
    ("doc", 3802),
    ("mood", 90001),
]
ENUMS = {"mood": ["sad", "ok", "happy"]}


def compile_(where: str) -> ShapeFilter:
    return ShapeFilter.compile(where, COLUMNS, ENUMS)


def test_compile_errors_carry_position_and_reason() -> None:
    with pytest.raises(ShapeFilterError) as info:
        compile_("this.id = 1 AND this.nope = 2")
    e = info.value
    assert isinstance(e, ElectricError)
    assert e.position == 16
    assert e.reason == 'column "nope" does not exist'
    assert str(e) == 'At location 16: column "nope" does not exist'
    with pytest.raises(ShapeFilterError, match="should evaluate to a boolean, but it's integer"):
        compile_("this.id + 1")
    with pytest.raises(ShapeFilterError, match="invalid input value for enum"):
        compile_("this.mood = 'angry'")
    with pytest.raises(ShapeFilterError, match=r"now\(\) is not allowed"):
        compile_("this.at > now()")
    with pytest.raises(TypeError, match="not a column"):
        ShapeFilter.compile("true", COLUMNS, {"nope": ["a"]})


def test_properties() -> None:
    f = compile_("this.name ILIKE 'a%' AND this.id > 1")
    assert f.where == "this.name ILIKE 'a%' AND this.id > 1"
    assert f.columns == ["id", "name"]
    assert repr(f) == "ShapeFilter(\"this.name ILIKE 'a%' AND this.id > 1\")"
    assert compile_("").columns == []


def test_rows_of_python_values() -> None:
    f = compile_(
        "this.id = 1 AND this.n > 2 AND this.f < 1.5 AND this.name LIKE 'x%' AND this.done"
        " AND this.at >= '2024-01-01T00:00:00Z' AND this.day = '2024-02-29'"
        " AND this.ref = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' AND this.mood > 'sad'"
        " AND this.doc IS NOT NULL"
    )
    row: dict[str, object] = {
        "id": 1,
        "n": 3,
        "f": 1.25,
        "name": "xyz",
        "done": True,
        "at": dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "day": dt.date(2024, 2, 29),
        "ref": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "mood": "ok",
        "doc": '{"a": 1}',
    }
    assert f.matches(row)
    # The same values in Postgres's text form.
    text_row = {**row, "n": "3", "f": "1.25", "done": "t", "at": "2024-01-01 00:00:00+00"}
    text_row |= {"day": "2024-02-29", "ref": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}
    assert f.matches(text_row)
    assert not f.matches({**row, "at": dt.datetime(2023, 12, 31, 23, 59, tzinfo=dt.UTC)})
    # A missing column is NULL: the clause is NULL, which does not pass.
    del row["done"]
    assert not f.matches(row)
    assert f.evaluate(row) is None


def test_three_valued_results() -> None:
    f = compile_("this.done OR this.id = 1")
    assert f.evaluate({"done": True}) is True
    assert f.evaluate({"done": False, "id": 2}) is False
    assert f.evaluate({"done": None, "id": 2}) is None
    assert f.evaluate({"done": None, "id": 1}) is True
    assert compile_("this.done IS NOT TRUE").evaluate({}) is True


def test_bad_values() -> None:
    f = compile_("this.id = 1 AND this.name = 'x' AND this.day = '2024-01-01'")
    with pytest.raises(TypeError, match='column "id"'):
        f.matches({"id": 1.5})
    with pytest.raises(ValueDecodeError):
        f.matches({"id": "one"})
    with pytest.raises(TypeError, match='column "name"'):
        f.matches({"name": 1})
    with pytest.raises(ValueDecodeError):
        f.matches({"day": "yesterday"})
    with pytest.raises(TypeError):
        compile_("this.done").matches({"done": 1})
    with pytest.raises(ShapeEvaluationError, match="division by zero"):
        compile_("100 / this.id = 1").matches({"id": 0})
    with pytest.raises(ShapeEvaluationError, match="integer out of range"):
        compile_("this.id * 2 > 0").matches({"id": 2**31 - 1})
    assert compile_("this.f = 0.5").matches({"f": decimal.Decimal("0.5")}) is True


def test_to_sql() -> None:
    f = compile_("this.name = 'it''s' AND this.id IN (1, 2) OR this.mood = 'ok'")
    sql, params = f.to_sql("this", 3)
    assert sql == (
        '((("this"."name" COLLATE "C" = $3::text) AND ("this"."id" IN ($4::int4, $5::int4)))'
        ' OR ("this"."mood" = $6))'
    )
    assert params == [("it's", 25), ("1", 23), ("2", 23), ("ok", 90001)]
    assert f.to_sql('a"b')[0].startswith('((("a""b"."name"')
    assert compile_("").to_sql("t") == ("TRUE", [])
    assert compile_("this.name IS NULL OR NULL").to_sql("t") == (
        '(("t"."name" IS NULL) OR $1::bool)',
        [(None, 16)],
    )


@pytest.mark.parametrize(
    "clause",
    ["1=1; DROP TABLE t", "') OR 1=1 --", "this.name = 'x' -- '", "this.name = $1", "$$a$$"],
)
def test_injection_attempts(clause: str) -> None:
    try:
        f = compile_(clause)
    except ShapeFilterError:
        return
    # Whatever compiles keeps its literals out of the SQL text.
    sql, _ = f.to_sql("t")
    assert "'" not in sql.replace("'UTC'", "").replace("'+00'", "")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(
            st.sampled_from(
                [
                    "this.id",
                    "this.name",
                    "this.at",
                    "this.day",
                    "'x'",
                    "'2024-01-01'",
                    "1",
                    "1.5",
                    "NULL",
                    "TRUE",
                    "(",
                    ")",
                    ",",
                    "=",
                    "<>",
                    "<",
                    "+",
                    "-",
                    "*",
                    "/",
                    "%",
                    "||",
                    "::int4",
                    "::text",
                    "AND",
                    "OR",
                    "NOT",
                    "IS",
                    "NULL",
                    "LIKE",
                    "ILIKE",
                    "IN",
                    "BETWEEN",
                    "lower(",
                    "abs(",
                    "CAST(",
                    "AS",
                    "date",
                    "'",
                    '"',
                    ";",
                    "--",
                    "/*",
                ]
            ),
            max_size=12,
        ).map(" ".join),
    )
)
def test_any_text_compiles_or_fails_cleanly(clause: str) -> None:
    error: ShapeFilterError | None = None
    try:
        f = compile_(clause)
    except ShapeFilterError as e:
        error = e
    if error is not None:
        assert 0 <= error.position <= len(clause)
        return
    sql, params = f.to_sql("t")
    assert sql.count("$") == len(params)
    try:
        f.evaluate({})
    except ShapeEvaluationError:
        pass
