"""Typed data access and live queries on the client's SQLite database.

A generated module (``electric-trio generate``) declares a ``msgspec.Struct`` per table and a
typed :class:`Table` for each; by hand it looks like::

    class Item(msgspec.Struct, kw_only=True):
        id: str
        title: str
        done: bool | None = None

    db = Database(SqliteExecutor("app.db"), schema)   # or the Satellite client as executor
    items = Table(db, "items", Item)
    await items.create({"id": "a", "title": "first"})
    todo = await items.find_many(where={"done": {"not": True}}, order_by={"title": "asc"}, take=10)
    async with items.live_many(where={"done": False}) as live:
        async for rows in live:   # now, then after every change of `items`
            ...

Where trees: ``{"col": value}``, ``{"col": {"gt"|"gte"|"lt"|"lte"|"not"|"equals": v}}``,
``{"col": {"in"|"not_in": [...]}}``, ``{"col": {"contains"|"starts_with"|"ends_with": "x"}}``
(SQLite ``LIKE``: ASCII letters match either case, as in the official client), and
``{"AND": [...]}``, ``{"OR": [...]}``, ``{"NOT": {...}}``. Every value is a parameter.
"""

from ._convert import JSON_NULL as JSON_NULL
from ._convert import JsonNull as JsonNull
from ._convert import from_sqlite as from_sqlite
from ._convert import to_sqlite as to_sqlite
from ._executor import ClientExecutor as ClientExecutor
from ._executor import ClientLike as ClientLike
from ._executor import Executor as Executor
from ._executor import Notifier as Notifier
from ._executor import SqliteExecutor as SqliteExecutor
from ._executor import Subscription as Subscription
from ._executor import TableNotifier as TableNotifier
from ._live import LiveQuery as LiveQuery
from ._live import tables_in_sql as tables_in_sql
from ._table import Database as Database
from ._table import Table as Table
from ._where import DataError as DataError
from ._where import InvalidArgumentError as InvalidArgumentError
from ._where import RecordNotFoundError as RecordNotFoundError

__all__ = [
    "JSON_NULL",
    "ClientExecutor",
    "ClientLike",
    "DataError",
    "Database",
    "Executor",
    "InvalidArgumentError",
    "JsonNull",
    "LiveQuery",
    "Notifier",
    "RecordNotFoundError",
    "SqliteExecutor",
    "Subscription",
    "Table",
    "TableNotifier",
    "from_sqlite",
    "tables_in_sql",
    "to_sqlite",
]
