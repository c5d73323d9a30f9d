"""The replication subsystem of the service: the electric schema, then the slot reader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import trio

from .._log import get_logger
from ..ddlx.history import MigrationHistory
from ..ddlx.install import install_electric_schema
from ..errors import ElectricError
from ..pg import PgError, connect
from ._log import TransactionLog
from ._reader import ReaderSettings, ReaderStatus, serve_replication
from ._slot import SlotInUseError

if TYPE_CHECKING:
    from ..service import Service

log = get_logger(__name__)

CONNECTOR = "postgres_1"
#: The longest the service waits at startup for the replay of the slot's window before it
#: reports ready (clients that resume meanwhile wait for their position in startReplication).
_REPLAY_WAIT = 10.0
_BACKOFF_MIN = 1.0
_BACKOFF_MAX = 10.0


class ReplicationSubsystem:
    """Installs the ``electric`` schema, then keeps the replication reader running.

    The service reports ready (``/api/status`` 200) only once the reader streams and, at
    startup, has read again the WAL flushed before it started (the slot's window). Problems
    a person must fix at the first start (``wal_level`` not logical, the slot held by another
    instance) end the service with one clear line; later failures restart the reader with a
    1-10 s backoff, resuming from the slot.
    """

    name = "replication"

    def __init__(self, settings: ReaderSettings | None = None) -> None:
        self._settings = settings
        self.txlog: TransactionLog[Any] | None = None
        self.history = MigrationHistory()
        self.streaming = False
        self.ever_started = False
        self._first: ReaderStatus | None = None
        self._replay_deadline = 0.0

    def install(self, service: Service) -> None:
        service.add_readiness_gate(lambda: self.streaming and self._replayed())

    def _replayed(self) -> bool:
        """Whether the first reader has replayed the slot's window into the log (or had the
        time to): clients resuming earlier would find their positions missing from the log.
        Later restarts of the reader find the log holding what clients were sent."""
        first = self._first
        return first is None or first.replayed or trio.current_time() >= self._replay_deadline

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from ..service import StartupError, connect_params

        config = service.config
        params = connect_params(config.database)
        settings = self._settings or ReaderSettings(
            resumable_wal_window=config.resumable_wal_window
        )
        try:
            async with await connect(params) as conn:
                applied = await install_electric_schema(conn)
                self.history = await MigrationHistory.load(conn)
        except PgError as e:
            raise StartupError(f"cannot install the electric schema: {e.message}") from None
        service.migrations = self.history
        log.info(
            f"Successfully initialized origin {CONNECTOR} at extension version "
            f"{applied[-1] if applied else ''}"
        )
        self.txlog = TransactionLog(config.txn_cache_size)
        service.txlog = self.txlog
        delay = _BACKOFF_MIN
        while True:
            outer = None if self.ever_started else task_status
            try:
                async with await connect(params) as conn:

                    async def apply_migrations(txns: Sequence[Any]) -> None:
                        await self.history.process(conn, [t for t in txns if t.ddl])

                    await serve_replication(
                        params,
                        self.txlog,
                        settings,
                        before_append=apply_migrations,
                        task_status=cast("trio.TaskStatus[ReaderStatus]", _Started(self, outer)),
                    )
            except BaseException as group:
                # The reader runs a nursery: its errors may come wrapped in an ExceptionGroup.
                err = _restartable(group)
                if err is None:
                    raise
                if self.streaming:  # it ran: a new failure starts the backoff afresh
                    delay = _BACKOFF_MIN
                self.streaming = False
                if not self.ever_started:
                    raise StartupError(_describe_startup_failure(err)) from None
                log.warning("replication stopped; restarting", error=str(err), retry_in=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)


_RESTARTABLE = (ElectricError, OSError, trio.BrokenResourceError)


def _restartable(error: BaseException) -> BaseException | None:
    """The error a reader restart answers, if every error in ``error`` is one; else None."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [_restartable(e) for e in error.exceptions]
        if not leaves or any(leaf is None for leaf in leaves):
            return None
        return leaves[0]
    return error if isinstance(error, _RESTARTABLE) else None


class _Started:
    """Passes the reader's ``started`` on, marking the subsystem as streaming."""

    def __init__(self, owner: ReplicationSubsystem, outer: trio.TaskStatus[None] | None) -> None:
        self._owner = owner
        self._outer = outer

    def started(self, value: object = None) -> None:
        if not self._owner.ever_started and isinstance(value, ReaderStatus):
            self._owner._first = value
            self._owner._replay_deadline = trio.current_time() + _REPLAY_WAIT
        self._owner.streaming = True
        self._owner.ever_started = True
        log.info(f'Successfully initialized Postgres connector "{CONNECTOR}".')
        if self._outer is not None:
            self._outer.started()


def _describe_startup_failure(error: BaseException) -> str:
    if isinstance(error, SlotInUseError):
        return f"cannot start replication: {error.message}. {error.hint}"
    if isinstance(error, PgError) and error.sqlstate == "55000" and "wal_level" in error.message:
        return (
            "cannot start replication: Postgres must run with wal_level = logical "
            f"({error.message})"
        )
    if isinstance(error, PgError):
        return f"cannot start replication: {error.message}"
    return f"cannot start replication: {error}"
