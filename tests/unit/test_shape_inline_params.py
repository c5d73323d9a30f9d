"""The shape read's COPY takes no parameters: they are written into the query as literals,
never inside quoted identifiers or string literals."""

from __future__ import annotations

from electric_trio import _native
from electric_trio.satellite.shapes import inline_params


def test_parameters_become_literals_outside_quotes() -> None:
    sql = """SELECT '$1', "a$1""b" FROM t WHERE x = $1::int4 AND y = ANY($2::text[]) AND z = $3"""
    out = inline_params(sql, ["5", ["it's", "a\\b"], None])
    assert out == (
        """SELECT '$1', "a$1""b" FROM t WHERE x = E'5'::int4 AND"""
        """ y = ANY(ARRAY[E'it''s', E'a\\\\b']::text[]::text[]) AND z = NULL"""
    )
    assert inline_params("SELECT $10, $1", [str(i) for i in range(10)]) == "SELECT E'9', E'0'"
    assert inline_params("SELECT $1", [[]]) == "SELECT '{}'::text[]"


def test_copy_rows_are_read_in_rust() -> None:
    rows = _native.ShapeRows(2)
    # The tags as the shadow row holds them (NULL: none); `_tags::text` escaped by COPY.
    tags = b'{"(\\\\"2024-01-01 00:00:00+00\\\\",\\\\"a b\\\\")"}'
    rows.extend([b"\\N\t1\t\\N\n", tags + b"\t2\tx\\ty\n"])
    assert len(rows) == 2
    assert rows.values([1, 0]) == [[None, "1"], ["x\ty", "2"]]
