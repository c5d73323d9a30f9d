"""Typed tables: ``create``/``find``/``update``/``upsert``/``delete`` over an :class:`Executor`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from ..schema import DbSchema, Relation, TableSchema
from ._convert import from_sqlite, to_sqlite
from ._executor import ClientExecutor, ClientLike, Executor
from ._live import LiveQuery, tables_in_sql
from ._where import (
    InvalidArgumentError,
    RecordNotFoundError,
    compile_order,
    compile_where,
    quote,
)

__all__ = ["Database", "Table"]

RowT = TypeVar("RowT", bound=msgspec.Struct)
T = TypeVar("T")

Where = Mapping[str, Any]
OrderBy = Mapping[str, str] | Sequence[Mapping[str, str]]
Include = Mapping[str, Any]

# SQLite's default limit of bound parameters is 999 before 3.32 (32766 after): stay below it.
_CHUNK = 500


class Database:
    """Every table of ``schema`` over ``executor`` (an :class:`Executor`, or the Satellite
    client itself): ``db.table("items")`` or the typed tables a generated module declares (they
    register here). Raw SQL and raw live queries live here too.
    """

    def __init__(self, executor: Executor | ClientLike, schema: DbSchema) -> None:
        if not isinstance(executor, Executor):
            executor = ClientExecutor(executor)  # the Satellite client
        self.executor: Executor = executor
        self.schema = schema
        self._tables: dict[str, Table[Any]] = {}

    def table(self, name: str) -> Table[Any]:
        """The table ``name``: the typed one registered for it, else one with rows of a
        ``msgspec.Struct`` type made from the schema."""
        table = self._tables.get(name)
        if table is None:
            table = Table(self, name, _struct_for(self.schema.table(name)))
        return table

    def _register(self, table: Table[Any]) -> None:
        self._tables[table.name] = table

    async def raw(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Runs ``sql`` with ``?`` parameters; returns its rows as they are stored."""
        return await self.executor.query(sql, params)

    async def raw_execute(
        self, sql: str, params: Sequence[Any] = (), *, tables: Iterable[str] | None = None
    ) -> int:
        """Runs a write; returns the rows changed and tells the notifier about ``tables``
        (default: every table of the schema named in ``sql``)."""
        count = await self.executor.execute(sql, params)
        changed = set(tables) if tables is not None else tables_in_sql(sql, self.schema.tables)
        self.executor.notifier.notify(changed)
        return count

    def live_raw(
        self, sql: str, params: Sequence[Any] = (), *, tables: Iterable[str] | None = None
    ) -> LiveQuery[list[dict[str, Any]]]:
        """A live :meth:`raw`: a new result first, then after each change of ``tables``
        (default: every table of the schema named in ``sql``)."""
        read = set(tables) if tables is not None else tables_in_sql(sql, self.schema.tables)
        return LiveQuery(self.executor.notifier, read, lambda: self.raw(sql, params))


def _struct_for(table: TableSchema) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [(c.name, Any) for c in table.columns]
    fields += [(r.field, Any, msgspec.UNSET) for r in table.relations]
    return msgspec.defstruct(table.name, fields, kw_only=True)


class Table(Generic[RowT]):
    """One table with rows of type ``RowT`` (a ``msgspec.Struct`` with a field per column, and
    optionally one per relation defaulting to ``msgspec.UNSET``, filled by ``include``).

    Data is a ``RowT`` or a mapping of column names; values are Python values (``bool``,
    ``datetime``, ``bytes``, JSON-able values...) stored as the official client stores them.
    """

    def __init__(self, db: Database, name: str, row_type: type[RowT]) -> None:
        self.db = db
        self.name = name
        self.schema: TableSchema = db.schema.table(name)
        self.row_type = row_type
        self._columns = tuple(c.name for c in self.schema.columns)
        self._select = ", ".join(quote(c) for c in self._columns)
        self._types = {c.name: c.pg_type for c in self.schema.columns}
        self._relations = {r.field: r for r in self.schema.relations}
        # a field may carry another name than its column (msgspec.field(name=...)), e.g. a
        # column named like a Python keyword
        self._field_of = dict(
            zip(row_type.__struct_encode_fields__, row_type.__struct_fields__, strict=True)
        )
        db._register(self)

    # -- values

    def _row_values(self, data: RowT | Mapping[str, Any], *, what: str) -> dict[str, Any]:
        if isinstance(data, msgspec.Struct):
            items = {
                name: getattr(data, f)
                for name, f in zip(
                    data.__struct_encode_fields__, data.__struct_fields__, strict=True
                )
                if getattr(data, f) is not msgspec.UNSET
            }
        elif isinstance(data, Mapping):
            items = dict(data)
        else:
            raise InvalidArgumentError(f"{what} takes a row or a mapping, not {type(data)}")
        values: dict[str, Any] = {}
        for key, value in items.items():
            if key in self._relations:
                raise InvalidArgumentError(
                    f"{self.name}.{key} is a relation: write the related rows through their table"
                )
            pg_type = self._types.get(key)
            if pg_type is None:
                raise InvalidArgumentError(f"table {self.name!r} has no column {key!r}")
            try:
                values[key] = to_sqlite(value, pg_type)
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"{self.name}.{key}: {exc}") from None
        return values

    def _to_row(self, stored: Mapping[str, Any], included: Mapping[str, Any] = {}) -> RowT:
        field = self._field_of
        values = {
            field.get(c, c): from_sqlite(stored.get(c), self._types[c]) for c in self._columns
        }
        values.update((field.get(k, k), v) for k, v in included.items())
        return self.row_type(**values)

    def _unique(self, where: Where) -> Where:
        missing = [
            c
            for c in self.schema.primary_key
            if c not in where or isinstance(where[c], Mapping) or where[c] is None
        ]
        if missing:
            raise InvalidArgumentError(
                f"a unique where on {self.name!r} names its primary key: missing {missing}"
            )
        return where

    def _changed(self, count: int) -> None:
        if count:
            self.db.executor.notifier.notify({self.name})

    # -- writes

    async def create(self, data: RowT | Mapping[str, Any]) -> RowT:
        """Inserts one row; returns it as stored."""
        values = self._row_values(data, what="create")
        if values:
            cols = ", ".join(quote(c) for c in values)
            marks = ", ".join("?" for _ in values)
            sql = f"INSERT INTO {quote(self.name)} ({cols}) VALUES ({marks})"
        else:
            sql = f"INSERT INTO {quote(self.name)} DEFAULT VALUES"
        rows = await self.db.executor.query(
            f"{sql} RETURNING {self._select}", list(values.values())
        )
        self._changed(len(rows))
        return self._to_row(rows[0])

    async def create_many(
        self, data: Sequence[RowT | Mapping[str, Any]], *, skip_duplicates: bool = False
    ) -> int:
        """Inserts rows (rows with the same columns in one statement); returns how many were
        inserted. ``skip_duplicates``: a row whose key exists is left out instead of failing."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        for item in data:
            values = self._row_values(item, what="create_many")
            groups.setdefault(tuple(values), []).append(list(values.values()))
        verb = "INSERT OR IGNORE" if skip_duplicates else "INSERT"
        count = 0
        try:
            for cols, rows in groups.items():
                if not cols:
                    for _ in rows:
                        count += await self.db.executor.execute(
                            f"{verb} INTO {quote(self.name)} DEFAULT VALUES"
                        )
                    continue
                per = max(1, _CHUNK // len(cols))
                names = ", ".join(quote(c) for c in cols)
                for start in range(0, len(rows), per):
                    chunk = rows[start : start + per]
                    marks = ", ".join("(" + ", ".join("?" for _ in cols) + ")" for _ in chunk)
                    count += await self.db.executor.execute(
                        f"{verb} INTO {quote(self.name)} ({names}) VALUES {marks}",
                        [v for row in chunk for v in row],
                    )
        finally:
            self._changed(count)
        return count

    async def update(self, *, where: Where, data: RowT | Mapping[str, Any]) -> RowT:
        """Updates the row with the key of ``where``; returns it. Raises
        :class:`RecordNotFoundError` when there is none."""
        rows = await self._update(self._unique(where), data)
        if not rows:
            raise RecordNotFoundError(f"update: no {self.name!r} row matches {dict(where)!r}")
        return self._to_row(rows[0])

    async def _update(self, where: Where, data: RowT | Mapping[str, Any]) -> list[dict[str, Any]]:
        values = self._row_values(data, what="update")
        condition, params = compile_where(self.schema, where)
        if not values:
            return await self.db.executor.query(
                f"SELECT {self._select} FROM {quote(self.name)} WHERE {condition}", params
            )
        sets = ", ".join(f"{quote(c)} = ?" for c in values)
        rows = await self.db.executor.query(
            f"UPDATE {quote(self.name)} SET {sets} WHERE {condition} RETURNING {self._select}",
            [*values.values(), *params],
        )
        self._changed(len(rows))
        return rows

    async def update_many(
        self, *, data: RowT | Mapping[str, Any], where: Where | None = None
    ) -> int:
        """Updates every row matching ``where``; returns how many."""
        values = self._row_values(data, what="update_many")
        if not values:
            return 0
        condition, params = compile_where(self.schema, where)
        sets = ", ".join(f"{quote(c)} = ?" for c in values)
        count = await self.db.executor.execute(
            f"UPDATE {quote(self.name)} SET {sets} WHERE {condition}",
            [*values.values(), *params],
        )
        self._changed(count)
        return count

    async def upsert(
        self,
        *,
        where: Where,
        create: RowT | Mapping[str, Any],
        update: RowT | Mapping[str, Any],
    ) -> RowT:
        """Updates the row with the key of ``where`` with ``update``, or creates ``create``."""
        self._unique(where)
        rows = await self._update(where, update)
        if rows:
            return self._to_row(rows[0])
        return await self.create(create)

    async def delete(self, *, where: Where) -> RowT:
        """Deletes the row with the key of ``where``; returns it. Raises
        :class:`RecordNotFoundError` when there is none."""
        condition, params = compile_where(self.schema, self._unique(where))
        rows = await self.db.executor.query(
            f"DELETE FROM {quote(self.name)} WHERE {condition} RETURNING {self._select}", params
        )
        if not rows:
            raise RecordNotFoundError(f"delete: no {self.name!r} row matches {dict(where)!r}")
        self._changed(len(rows))
        return self._to_row(rows[0])

    async def delete_many(self, *, where: Where | None = None) -> int:
        """Deletes every row matching ``where`` (every row when none); returns how many."""
        condition, params = compile_where(self.schema, where)
        count = await self.db.executor.execute(
            f"DELETE FROM {quote(self.name)} WHERE {condition}", params
        )
        self._changed(count)
        return count

    # -- reads

    async def find_unique(self, *, where: Where, include: Include | None = None) -> RowT | None:
        """The row with the key of ``where``, or ``None``."""
        rows = await self.find_many(where=self._unique(where), include=include, take=1)
        return rows[0] if rows else None

    async def find_first(
        self,
        *,
        where: Where | None = None,
        order_by: OrderBy | None = None,
        skip: int = 0,
        include: Include | None = None,
    ) -> RowT | None:
        """The first row matching ``where`` in ``order_by`` order, or ``None``."""
        rows = await self.find_many(
            where=where, order_by=order_by, skip=skip, take=1, include=include
        )
        return rows[0] if rows else None

    async def find_many(
        self,
        *,
        where: Where | None = None,
        order_by: OrderBy | None = None,
        take: int | None = None,
        skip: int = 0,
        include: Include | None = None,
    ) -> list[RowT]:
        """The rows matching ``where``, ordered, ``skip`` left out, at most ``take``; with
        ``include={"relation": True | {where, order_by, take, skip, include}}`` the related rows
        fill the relation fields."""
        condition, params = compile_where(self.schema, where)
        sql = f"SELECT {self._select} FROM {quote(self.name)} WHERE {condition}"
        sql += compile_order(self.schema, order_by)
        sql += _limit(take, skip, params)
        stored = await self.db.executor.query(sql, params)
        return await self._with_includes(stored, include)

    async def count(self, *, where: Where | None = None) -> int:
        """How many rows match ``where``."""
        condition, params = compile_where(self.schema, where)
        rows = await self.db.executor.query(
            f"SELECT count(*) AS n FROM {quote(self.name)} WHERE {condition}", params
        )
        return int(rows[0]["n"])

    async def _with_includes(
        self, stored: list[dict[str, Any]], include: Include | None
    ) -> list[RowT]:
        if not include:
            return [self._to_row(row) for row in stored]
        fields = set(self._field_of)
        extra: list[dict[str, Any]] = [{} for _ in stored]
        for field, spec in include.items():
            relation = self._relations.get(field)
            if relation is None:
                raise InvalidArgumentError(f"table {self.name!r} has no relation {field!r}")
            if field not in fields:
                raise InvalidArgumentError(
                    f"{self.row_type.__name__} has no field {field!r} to include into"
                )
            if spec is False or spec is None:
                continue
            options: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
            unknown = set(options) - {"where", "order_by", "take", "skip", "include"}
            if unknown:
                raise InvalidArgumentError(f"include of {field!r}: unknown options {unknown}")
            related = await self._related(relation, stored, options)
            for row, holder in zip(stored, extra, strict=True):
                matches = related.get(self._key(row, relation), [])
                if relation.many:
                    skip = int(options.get("skip", 0))
                    take = options.get("take")
                    holder[field] = matches[skip : None if take is None else skip + int(take)]
                else:
                    holder[field] = matches[0] if matches else None
        return [self._to_row(row, holder) for row, holder in zip(stored, extra, strict=True)]

    def _key(self, row: Mapping[str, Any], relation: Relation) -> Any:
        return row.get(relation.from_column)

    async def _related(
        self, relation: Relation, stored: list[dict[str, Any]], options: Mapping[str, Any]
    ) -> dict[Any, list[Any]]:
        target = self.db.table(relation.table)
        keys = list(
            dict.fromkeys(k for row in stored if (k := self._key(row, relation)) is not None)
        )
        by_key: dict[Any, list[Any]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            condition, params = compile_where(target.schema, options.get("where"))
            marks = ", ".join("?" for _ in chunk)
            sql = (
                f"SELECT {target._select} FROM {quote(target.name)}"
                f" WHERE {quote(relation.to_column)} IN ({marks}) AND ({condition})"
            )
            sql += compile_order(target.schema, options.get("order_by"))
            rows = await self.db.executor.query(sql, [*chunk, *params])
            built = await target._with_includes(rows, options.get("include"))
            for row, item in zip(rows, built, strict=True):
                by_key.setdefault(row[relation.to_column], []).append(item)
        return by_key

    def tables_read(self, include: Include | None) -> set[str]:
        """This table and every table ``include`` reads."""
        tables = {self.name}
        for field, spec in (include or {}).items():
            relation = self._relations.get(field)
            if relation is None or spec is False or spec is None:
                continue
            nested = spec.get("include") if isinstance(spec, Mapping) else None
            tables |= self.db.table(relation.table).tables_read(nested)
        return tables

    # -- live queries

    def _live(self, include: Include | None, run: Callable[[], Awaitable[T]]) -> LiveQuery[T]:
        return LiveQuery(self.db.executor.notifier, self.tables_read(include), run)

    def live_many(
        self,
        *,
        where: Where | None = None,
        order_by: OrderBy | None = None,
        take: int | None = None,
        skip: int = 0,
        include: Include | None = None,
    ) -> LiveQuery[list[RowT]]:
        """:meth:`find_many` as an async iterator: a result now, then a new one after each
        change to a table the query reads (bursts of changes give one result)."""
        compile_where(self.schema, where)  # bad arguments fail here, not at the first result
        return self._live(
            include,
            lambda: self.find_many(
                where=where, order_by=order_by, take=take, skip=skip, include=include
            ),
        )

    def live_first(
        self,
        *,
        where: Where | None = None,
        order_by: OrderBy | None = None,
        skip: int = 0,
        include: Include | None = None,
    ) -> LiveQuery[RowT | None]:
        """:meth:`find_first` as a live query."""
        compile_where(self.schema, where)
        return self._live(
            include,
            lambda: self.find_first(where=where, order_by=order_by, skip=skip, include=include),
        )

    def live_unique(
        self, *, where: Where, include: Include | None = None
    ) -> LiveQuery[RowT | None]:
        """:meth:`find_unique` as a live query."""
        self._unique(where)
        return self._live(include, lambda: self.find_unique(where=where, include=include))


def _limit(take: int | None, skip: int, params: list[Any]) -> str:
    if take is not None and (isinstance(take, bool) or not isinstance(take, int) or take < 0):
        raise InvalidArgumentError(f"take is a non-negative int, not {take!r}")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise InvalidArgumentError(f"skip is a non-negative int, not {skip!r}")
    if take is None and not skip:
        return ""
    params.extend([-1 if take is None else take, skip])
    return " LIMIT ? OFFSET ?"
