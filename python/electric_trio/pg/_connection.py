"""A Trio-native Postgres connection.

The wire protocol is framed and parsed by the Rust core (``electric_trio._native``): bytes
received are fed to a :class:`~electric_trio._native.BackendReader`, which hands back whole
messages and decodes runs of DataRow / CopyData messages in one call. This module is the I/O and
the protocol's state machine around it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import scramp
import trio

from .. import _native
from ..errors import ProtocolError
from ._errors import ConnectionLostError, PgAuthError, PgConnectError, PgError
from ._params import ConnectParams
from ._replication import ReplicationStream
from ._types import encode_params

log = logging.getLogger("electric_trio.pg")

#: The most bytes one receive takes. Above glibc's mmap threshold (128 KiB, which the service
#: fixes: _malloc.py) on purpose: Python allocates the whole size for each receive, then
#: shrinks it to what came; a mapped buffer costs about 20 us a receive (map, shrink, unmap)
#: but stays out of the heap. At 64 KiB the buffers came from the heap, and the few bytes
#: each left behind fragmented it: the soak's heap grew 2.4 MiB in 5 minutes of transactions
#: (+0.43 MiB/min, a leak by its rule) against 0.8 MiB and level at 256 KiB.
_RECV_SIZE = 1 << 18
_SEND_CHUNK = 1 << 18
#: How long a cancelled query may take to wind down before the connection is closed instead.
_CANCEL_GRACE = 10.0

Row = tuple[Any, ...]


class Column(msgspec.Struct, frozen=True, gc=False):
    """One column of a result (a RowDescription field)."""

    name: str
    table_oid: int
    column_id: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


class Result(msgspec.Struct):
    """The outcome of one statement: its command tag, its columns and its rows."""

    command: str
    columns: list[Column]
    rows: list[Row]

    @property
    def rowcount(self) -> int:
        """The row count of the command tag (``INSERT 0 5`` -> 5), or -1 if it has none."""
        last = self.command.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else -1


def _ssl_context() -> ssl.SSLContext:
    # libpq's sslmode=require: encrypt, do not verify the certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _reason(error: OSError) -> str:
    """The most specific reason of a failed connect (Trio groups one error per address)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            return os.strerror(cause.errno).lower()
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        else:
            cause = cause.__cause__
    return str(error) or type(error).__name__


async def _open_stream(params: ConnectParams) -> trio.abc.Stream:
    where = f"{params.host}:{params.port}"
    try:
        if params.host.startswith("/"):
            sock: trio.abc.Stream = await trio.open_unix_socket(
                f"{params.host}/.s.PGSQL.{params.port}"
            )
        else:
            sock = await trio.open_tcp_stream(params.host, params.port)
    except OSError as e:
        raise PgConnectError(f"cannot connect to Postgres at {where}: {_reason(e)}") from None
    if params.sslmode == "disable":
        return sock
    try:
        await sock.send_all(_native.encode_ssl_request())
        answer = await sock.receive_some(1)
    except (OSError, trio.BrokenResourceError) as e:
        await trio.aclose_forcefully(sock)
        raise PgConnectError(f"cannot connect to Postgres at {where}: {e}") from None
    except BaseException:  # cancelled meanwhile: do not leak the socket
        await trio.aclose_forcefully(sock)
        raise
    if answer == b"S":
        tls = trio.SSLStream(sock, _ssl_context(), server_hostname=params.host)
        try:
            await tls.do_handshake()
        except BaseException as e:
            await trio.aclose_forcefully(sock)
            if not isinstance(e, trio.BrokenResourceError | ssl.SSLError):
                raise
            if params.sslmode == "require":
                raise PgConnectError(
                    f"TLS handshake with Postgres at {where} failed: {e}"
                ) from None
            # sslmode=prefer/allow: like libpq, try again in clear.
            return await _open_stream(msgspec.structs.replace(params, sslmode="disable"))
        return tls
    if answer == b"N":
        if params.sslmode == "require":
            await trio.aclose_forcefully(sock)
            raise PgConnectError(f"Postgres at {where} does not support TLS, and sslmode=require")
        return sock
    await trio.aclose_forcefully(sock)
    raise PgConnectError(
        f"Postgres at {where} answered the TLS request with {answer!r}: is it a Postgres server?"
    )


async def connect(
    params: ConnectParams | str,
    *,
    connect_timeout: float | None = None,
    replication: str | None = None,
) -> Connection:
    """Opens a connection, authenticates and waits until the server is ready for queries.

    ``replication="database"`` opens a logical replication connection (see
    :meth:`Connection.start_replication`). Raises :class:`PgConnectError` when the server cannot
    be reached, :class:`PgAuthError` when it refuses the credentials.
    """
    if isinstance(params, str):
        params = ConnectParams.from_url(params)
    timeout = params.connect_timeout if connect_timeout is None else connect_timeout
    try:
        with trio.fail_after(timeout):
            stream = await _open_stream(params)
            conn = Connection(stream, params)
            try:
                await conn._startup(replication)
            except BaseException:
                await conn._close_now()
                raise
            return conn
    except trio.TooSlowError:
        raise PgConnectError(
            f"timed out after {timeout:g}s connecting to Postgres at {params.host}:{params.port}"
        ) from None


class Connection:
    """One Postgres session. Operations on it run one at a time (a lock serialises them).

    Cancelling a running operation (through a Trio cancel scope) sends a CancelRequest so that
    the server stops too; the connection stays usable afterwards.
    """

    def __init__(self, stream: trio.abc.Stream, params: ConnectParams) -> None:
        self._stream = stream
        self.params = params
        self._reader = _native.BackendReader()
        self._lock = trio.Lock()
        self._closed = False
        self._broken: BaseException | None = None
        #: Server parameters reported by ParameterStatus (server_version, TimeZone, ...).
        self.server_parameters: dict[str, str] = {}
        self.backend_pid: int = 0
        self._secret_key: bytes = b""
        #: Transaction status from the last ReadyForQuery: I (idle), T (in tx), E (failed tx).
        self.transaction_status: str = "I"
        #: The latest notices (warnings and the like) the server sent.
        self.notices: deque[PgError] = deque(maxlen=64)
        #: LISTEN/NOTIFY notifications received: (pid, channel, payload).
        self.notifications: deque[tuple[int, str, str]] = deque(maxlen=1024)
        # A request was sent and its ReadyForQuery has not arrived yet.
        self._in_flight = False
        # Inside COPY FROM STDIN: the server waits for our CopyData.
        self._copy_in_active = False

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def server_version(self) -> int:
        """``server_version_num``-style integer (e.g. 180001), from the startup parameters."""
        text = self.server_parameters.get("server_version", "0").split()[0]
        major, _, minor = text.partition(".")
        try:
            return int(major) * 10000 + int(minor or 0)
        except ValueError:
            return 0

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Says goodbye to the server and closes the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(1) as scope:
            scope.shield = True
            try:
                if self._broken is None:
                    await self._stream.send_all(_native.encode_terminate())
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            await trio.aclose_forcefully(self._stream)

    async def _close_now(self) -> None:
        self._closed = True
        await trio.aclose_forcefully(self._stream)

    # ---- low-level I/O ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise PgError("the connection is closed")
        if self._broken is not None:
            raise ConnectionLostError(f"the connection was lost earlier: {self._broken}")

    def _lost(self, cause: BaseException) -> ConnectionLostError:
        self._broken = cause
        where = f"{self.params.host}:{self.params.port}"
        return ConnectionLostError(f"lost the connection to Postgres at {where}: {cause}")

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise self._lost(e) from None

    async def _recv_more(self) -> None:
        try:
            data = await self._stream.receive_some(_RECV_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise self._lost(e) from None
        if not data:
            raise self._lost(EOFError("server closed the connection"))
        self._reader.feed(data)

    def _next_buffered(self) -> tuple[Any, ...] | None:
        """The next buffered message that is not asynchronous (notices etc. are absorbed)."""
        while True:
            try:
                msg = self._reader.next()
            except ProtocolError as e:
                self._broken = e
                raise
            if msg is None:
                return None
            tag = msg[0]
            if tag == "N":
                notice = PgError.from_fields(msg[1])
                self.notices.append(notice)
                log.info("postgres notice: %s", notice.message)
            elif tag == "S":
                self.server_parameters[msg[1]] = msg[2]
            elif tag == "A":
                self.notifications.append((msg[1], msg[2], msg[3]))
            else:
                return msg

    async def _next(self) -> tuple[Any, ...]:
        while True:
            msg = self._next_buffered()
            if msg is not None:
                return msg
            await self._recv_more()

    # ---- startup and authentication --------------------------------------------------------

    async def _startup(self, replication: str | None) -> None:
        p = self.params
        startup = [
            ("user", p.user),
            ("database", p.dbname),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("bytea_output", "hex"),
            ("application_name", p.application_name),
        ]
        if replication:
            startup.append(("replication", replication))
        startup.extend(p.options.items())
        await self._send(_native.encode_startup(startup))
        scram: scramp.ScramClient | None = None
        while True:
            msg = await self._next()
            tag = msg[0]
            if tag == "R":
                code = msg[1]
                if code == 0:
                    continue
                password = p.password
                if code in (3, 5, 10) and password is None:
                    raise PgAuthError(
                        f"Postgres asks user {p.user!r} for a password and none was given",
                        sqlstate="28P01",
                    )
                assert password is not None or code in (11, 12)
                if code == 3:
                    await self._send(_native.encode_password(password.encode()))  # type: ignore[union-attr]
                elif code == 5:
                    inner = hashlib.md5((password + p.user).encode()).hexdigest()  # type: ignore[operator]
                    digest = hashlib.md5(inner.encode() + msg[2]).hexdigest()
                    await self._send(_native.encode_password(b"md5" + digest.encode()))
                elif code == 10:
                    if "SCRAM-SHA-256" not in msg[2]:
                        raise PgAuthError(f"no supported SASL mechanism among {msg[2]}")
                    scram = scramp.ScramClient(["SCRAM-SHA-256"], p.user, password)
                    first = scram.get_client_first().encode()
                    await self._send(_native.encode_sasl_initial_response("SCRAM-SHA-256", first))
                elif code == 11 and scram is not None:
                    scram.set_server_first(msg[2].decode())
                    await self._send(
                        _native.encode_sasl_response(scram.get_client_final().encode())
                    )
                elif code == 12 and scram is not None:
                    try:
                        scram.set_server_final(msg[2].decode())
                    except scramp.ScramException as e:
                        raise PgAuthError(f"the server's SCRAM signature is wrong: {e}") from None
                else:
                    raise PgAuthError(f"unsupported authentication request (code {code})")
            elif tag == "K":
                self.backend_pid = msg[1]
                self._secret_key = msg[2]
            elif tag == "Z":
                self._ready(msg[1])
                return
            elif tag == "E":
                raise PgError.from_fields(msg[1])
            elif tag == "v":
                continue  # NegotiateProtocolVersion: fine, we speak 3.0
            else:
                raise ProtocolError(f"unexpected message {tag!r} during startup")

    # ---- running operations ----------------------------------------------------------------

    async def _cancel_and_drain(self) -> None:
        """After a cancelled operation: make the server stop, then read up to ReadyForQuery.

        Runs shielded; if the server does not settle within the grace period the connection is
        closed instead.
        """
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_CANCEL_GRACE) as scope:
                try:
                    if self._copy_in_active:
                        # The server is waiting for our data: CopyFail ends the COPY at once.
                        await self._send(_native.encode_copy_fail("cancelled by the client"))
                        self._copy_in_active = False
                    else:
                        await self._send_cancel_request()
                    while self._in_flight:
                        msg = await self._next()
                        if msg[0] == "Z":
                            self._ready(msg[1])
                        elif msg[0] == "G":
                            await self._send(_native.encode_copy_fail("cancelled by the client"))
                        elif msg[0] == "W":
                            await self._send(_native.encode_copy_done())
                        elif msg[0] in ("d", "D"):
                            self._reader.read_copy_data()
                            self._reader.read_rows()
                except (PgError, ProtocolError):
                    pass
            if scope.cancelled_caught or self._broken is not None:
                self._broken = self._broken or trio.TooSlowError("cancel did not complete")
                await self._close_now()

    async def _send_cancel_request(self) -> None:
        # A CancelRequest goes over a new connection (plain TCP is fine: it carries only the key).
        p = msgspec.structs.replace(self.params, sslmode="disable")
        try:
            stream = await _open_stream(p)
        except PgConnectError:
            return
        try:
            await stream.send_all(_native.encode_cancel_request(self.backend_pid, self._secret_key))
            with trio.move_on_after(2):
                await stream.receive_some(1)  # the server closes it when done
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    @asynccontextmanager
    async def _operation(self) -> AsyncIterator[None]:
        """Serialises operations; a cancelled one is cancelled on the server too."""
        async with self._lock:
            self._check_usable()
            try:
                yield
            except BaseException:
                # Cancelled, or an error raised by a caller's code (a COPY data iterator, the
                # body of copy_out): the server may still be busy with our request.
                if self._in_flight and self._broken is None and not self._closed:
                    await self._cancel_and_drain()
                raise

    async def _request(self, payload: bytes) -> None:
        await self._send(payload)
        self._in_flight = True

    def _ready(self, status: str) -> None:
        self.transaction_status = status
        self._in_flight = False

    async def _collect(self) -> list[Result]:
        """Reads the results of a query up to ReadyForQuery."""
        results: list[Result] = []
        columns: list[Column] = []
        rows: list[Row] | None = None
        error: PgError | None = None
        reader = self._reader
        while True:
            if rows is not None:
                batch = reader.read_rows()
                if batch:
                    rows.extend(batch)
            msg = self._next_buffered()
            if msg is None:
                await self._recv_more()
                continue
            tag = msg[0]
            if tag == "T":
                columns = [Column(*f) for f in msg[1]]
                reader.set_columns([c.type_oid for c in columns], [c.format for c in columns])
                rows = []
            elif tag == "C":
                results.append(Result(msg[1], columns, rows if rows is not None else []))
                columns, rows = [], None
            elif tag == "Z":
                self._ready(msg[1])
                if error is not None:
                    raise error
                return results
            elif tag == "E":
                error = PgError.from_fields(msg[1])
                rows = None
                if error.severity in ("FATAL", "PANIC"):
                    # The server closes the session after this: there will be no ReadyForQuery.
                    self._broken = error
                    raise error
            elif tag == "I":
                results.append(Result("", [], []))
            elif tag == "G":
                await self._send(_native.encode_copy_fail("COPY FROM STDIN needs copy_in()"))
            elif tag == "H":
                while True:  # a COPY TO STDOUT through query(): discard its data
                    reader.read_copy_data()
                    nxt = await self._next()
                    if nxt[0] == "c":
                        break
            elif tag == "D":
                raise ProtocolError("DataRow without a RowDescription")
            # ParseComplete, BindComplete, NoData, ParameterDescription, CloseComplete: nothing.

    # ---- public queries --------------------------------------------------------------------

    async def query(self, sql: str, *params: Any) -> list[Result]:
        """Runs ``sql`` and returns one :class:`Result` per statement.

        Without parameters the simple protocol is used (several statements may be given, and
        replication commands work); with parameters (``$1``, ``$2``...) the extended protocol.
        """
        if params:
            oids, values = encode_params(params)
            payload = _native.encode_extended_query(sql, oids, values)
        else:
            payload = _native.encode_query(sql)
        async with self._operation():
            await self._request(payload)
            return await self._collect()

    async def execute(self, sql: str, *params: Any) -> str:
        """Runs ``sql`` and returns the command tag of its last statement (e.g. ``INSERT 0 1``)."""
        results = await self.query(sql, *params)
        return results[-1].command if results else ""

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        """Runs ``sql`` and returns the rows of its last statement as tuples."""
        results = await self.query(sql, *params)
        return results[-1].rows if results else []

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        """The first row of the result, or None."""
        rows = await self.fetch(sql, *params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *params: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetchrow(sql, *params)
        return row[0] if row else None

    # ---- COPY ------------------------------------------------------------------------------

    async def copy_in(self, sql: str, data: Iterable[bytes] | AsyncIterable[bytes]) -> int:
        """Runs a ``COPY ... FROM STDIN`` and streams ``data`` (chunks of COPY text or binary).

        Returns the number of rows copied. If iterating ``data`` fails or the call is
        cancelled, the COPY is aborted (nothing is written) and the exception propagates.
        """
        async with self._operation():
            await self._request(_native.encode_query(sql))
            await self._expect_copy("G", "CopyInResponse")
            self._copy_in_active = True
            pending: list[bytes] = []
            size = 0

            async def flush() -> None:
                nonlocal pending, size
                await self._send(_native.encode_copy_data_many(pending))
                pending, size = [], 0

            if isinstance(data, AsyncIterable):
                async for chunk in data:
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= _SEND_CHUNK:
                        await flush()
            else:
                for chunk in data:
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= _SEND_CHUNK:
                        await flush()
            if pending:
                await flush()
            await self._send(_native.encode_copy_done())
            self._copy_in_active = False
            results = await self._collect()
            return results[-1].rowcount if results else 0

    async def _expect_copy(self, tag: str, name: str) -> None:
        msg = await self._next()
        if msg[0] == tag:
            return
        if msg[0] == "E":
            error = PgError.from_fields(msg[1])
            await self._collect()
            raise error
        raise ProtocolError(f"expected {name}, got {msg[0]!r}")

    @asynccontextmanager
    async def copy_out(self, sql: str) -> AsyncIterator[CopyOut]:
        """Runs a ``COPY ... TO STDOUT``; iterate the yielded object for the data.

        ``async for chunk in copy`` gives one bytes object per CopyData message (a row in text
        format); ``async for batch in copy.batches()`` gives lists of them, which is faster.
        Leaving the block early cancels the COPY on the server.
        """
        async with self._operation():
            await self._request(_native.encode_query(sql))
            await self._expect_copy("H", "CopyOutResponse")
            copy = CopyOut(self)
            yield copy
            if not copy.done:
                # Left early: stop the server's COPY and skip what it already sent.
                await self._cancel_and_drain()

    # ---- replication -----------------------------------------------------------------------

    async def start_replication(self, command: str) -> ReplicationStream:
        """Sends ``START_REPLICATION ...`` on a replication connection and returns the stream.

        The connection is dedicated to the stream until :meth:`ReplicationStream.stop`.
        """
        await self._lock.acquire()
        try:
            self._check_usable()
            await self._request(_native.encode_query(command))
            await self._expect_copy("W", "CopyBothResponse")
            return ReplicationStream(self)
        except BaseException:
            self._lock.release()
            raise


class CopyOut:
    """The data of a running ``COPY ... TO STDOUT``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.done = False
        self.command = ""
        self._pending: deque[bytes] = deque()

    async def _batch(self) -> list[bytes] | None:
        conn = self._conn
        while not self.done:
            batch: list[bytes] = conn._reader.read_copy_data()
            if batch:
                return batch
            msg = conn._next_buffered()
            if msg is None:
                await conn._recv_more()
            elif msg[0] == "c":
                results = await conn._collect()
                self.command = results[-1].command if results else ""
                self.done = True
            elif msg[0] == "E":
                error = PgError.from_fields(msg[1])
                await conn._collect()
                self.done = True
                raise error
            else:
                raise ProtocolError(f"unexpected message {msg[0]!r} during COPY")
        return None

    async def batches(self) -> AsyncGenerator[list[bytes], None]:
        """Lists of CopyData payloads, as they arrive."""
        while True:
            batch = await self._batch()
            if batch is None:
                return
            yield batch

    def __aiter__(self) -> CopyOut:
        return self

    async def __anext__(self) -> bytes:
        if not self._pending:
            batch = await self._batch()
            if batch is None:
                raise StopAsyncIteration
            self._pending.extend(batch)
        return self._pending.popleft()

    async def read_all(self) -> list[bytes]:
        """Every remaining CopyData payload."""
        out: list[bytes] = list(self._pending)
        self._pending.clear()
        while (batch := await self._batch()) is not None:
            out.extend(batch)
        return out
