"""The Python local-first client: an electrified SQLite database kept in sync with the service.

Usage::

    from electric_trio.client import ElectricConfig, open_electric

    async with open_electric("app.db", schema, ElectricConfig(url="http://localhost:5133"),
                             token=token) as client:
        shape = await client.sync("items", where="this.done = false")
        await shape.synced()
        await client.conn.execute("INSERT INTO items (id, done) VALUES (?, 0)", ["a"])
        rows = await client.conn.query("SELECT * FROM items")

``schema`` is a :class:`~electric_trio.client.schema.DbSchema` (the generator writes one, with
the migrations bundle). :func:`electrify` opens the database (applying the internal migration
``'0'`` and the bundled migrations, checking that those already applied match), and returns an
:class:`ElectricClient`; ``async with client:`` gives it the nursery its connection runs in.
``await client.connect(token)`` returns once replication runs both ways and then keeps the
client connected (reconnecting with backoff, resuming from the stored LSN; writes made offline
go out once connected); ``await client.disconnect()``; ``client.status`` and
``client.status_changes()`` (an async iterator of :class:`Status`).

Hooks for the typed data access (stable):

- ``client.conn`` (:class:`LocalDb`): ``await query(sql, params) -> list[dict]``,
  ``await execute(sql, params) -> int``, ``await executemany(sql, rows) -> int``,
  ``await run(fn, transaction=True)`` (``fn(sqlite3.Connection)`` in the worker thread). Every
  write is followed by an oplog snapshot, which notifies and wakes the pusher.
- ``client.notifier`` (:class:`Notifier`): ``notify(tables)``; ``subscribe()`` returns a
  :class:`ChangeStream` (registered at once), an async iterator of ``frozenset[str]`` (tables
  changed by a local snapshot, a remote transaction, subscription data or a GONE batch) with
  ``receive_nowait()`` (``trio.WouldBlock`` when empty) and ``close()``/``with``.

Shapes: ``await client.sync(table, where="this.x = 1", include={"relation_field": True})``
returns a :class:`ShapeHandle` (``await handle.synced()``, ``await handle.unsubscribe()``);
an identical shape returns the same subscription; shapes are kept in the database and resumed
after a restart.

Errors (all :class:`~electric_trio.errors.ElectricError`): :class:`AuthError` (token refused),
:class:`ConnectionFailedError` (bad URL, unreachable), :class:`SchemaMismatchError`
(``UNKNOWN_SCHEMA_VSN``: local migrations or the service disagree with the schema),
:class:`CorruptDatabaseError`, :class:`SubscriptionError`.
"""

from ._client import ChangeStream as ChangeStream
from ._client import ElectricClient as ElectricClient
from ._client import ElectricConfig as ElectricConfig
from ._client import LocalDb as LocalDb
from ._client import Notifier as Notifier
from ._client import ShapeHandle as ShapeHandle
from ._client import Status as Status
from ._client import electrify as electrify
from ._client import open_electric as open_electric
from ._errors import AuthError as AuthError
from ._errors import ClientClosedError as ClientClosedError
from ._errors import ClientError as ClientError
from ._errors import ConnectionFailedError as ConnectionFailedError
from ._errors import CorruptDatabaseError as CorruptDatabaseError
from ._errors import ProtocolViolationError as ProtocolViolationError
from ._errors import SchemaMismatchError as SchemaMismatchError
from ._errors import SubscriptionError as SubscriptionError

__all__ = [
    "AuthError",
    "ChangeStream",
    "ClientClosedError",
    "ClientError",
    "ConnectionFailedError",
    "CorruptDatabaseError",
    "ElectricClient",
    "ElectricConfig",
    "LocalDb",
    "Notifier",
    "ProtocolViolationError",
    "SchemaMismatchError",
    "ShapeHandle",
    "Status",
    "SubscriptionError",
    "electrify",
    "open_electric",
]
