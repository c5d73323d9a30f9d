"""One client of the migrations proxy: startup, password check, the upstream connection and
the relay in both directions (server-behaviour.md §10).

The relay has two directions, each a loop: in a thread of its own between plain sockets (a
Rust pump with the GIL released, back in Python only for what it must not pass), as a Trio task
when Postgres is reached over TLS (see :meth:`ProxySession._relay`). Client -> upstream forwards
runs of messages untouched and stops only at the messages migration mode reads (Query, Parse,
Bind, Execute, Sync), which it may rewrite; a plain Query (one SELECT, DML or transaction
statement that does not mention ``electric``) goes through unread, and so do the extended
protocol's batches of such statements (not INSERT) while no statement or portal is tracked.
Upstream -> client forwards everything untouched too, except inside the answer to a rewritten
request: there it puts back the command tags the client expects, drops what would show the
rewrite, and swallows the answers to requests the proxy made itself. Requests are matched to
answers by counting ReadyForQuery: each Query and each Sync sent upstream gets exactly one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal, TypeVar

import msgspec
import trio

from .. import _native
from .._log import get_logger
from ..errors import ElectricError
from ..pg import ConnectParams, PgAuthError, PgConnectError, PgError, connect
from . import _analyse, _prisma
from ._analyse import Table

if TYPE_CHECKING:
    from ._server import ProxyServer

__all__ = ["ProxySession"]

log = get_logger(__name__)

#: Largest message accepted from a client (Postgres's own limit is 1 GiB).
MAX_MESSAGE = 128 * 2**20
RECV_SIZE = 65536
STARTUP_TIMEOUT = 30.0
_ALL_TAGS = bytes(range(256))
_MIGRATION_STOPS = b"QPBESX"
_DROP = "\0drop"
# Errors that mean one side of the relay has gone away.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

Mode = Literal["migration", "transparent", "shadow", "prisma"]
_T = TypeVar("_T")


class _ClientGone(Exception):
    pass


@dataclass
class _Group:
    """The answer to one upstream Query or Sync that the relay must edit."""

    #: Number of the ReadyForQuery that ends it (1 = the first after startup).
    seq: int
    #: Per statement / Execute, in order: the tag to put back, None to keep, _DROP to swallow.
    tags: deque[str | None] = field(default_factory=deque)
    #: Swallow the whole answer (a request of the proxy's own).
    hidden: bool = False
    #: A refusal raised upstream with a stand-in SQLSTATE: (stand-in, the client's code).
    error_code: tuple[bytes, bytes] | None = None


class _Pipe:
    """Reads and writes one side of the relay.

    On a plain socket it reads and writes the descriptor without blocking and only waits (a
    trip through the scheduler) when the socket is not ready: a relay moves a message per
    direction per request, and Trio's stream methods cost two scheduler trips each. After a
    run of reads that did not have to wait it yields once, so a busy session does not starve
    the others. Any other stream (TLS to Postgres) goes through its own methods.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._streak = 0

    async def receive(self) -> bytes:
        """Some bytes; b"" at the end of the stream."""
        if self._fd < 0:
            return bytes(await self.stream.receive_some(RECV_SIZE))
        while True:
            try:
                data = os.read(self._fd, RECV_SIZE)
            except BlockingIOError:
                self._streak = 0
                await trio.lowlevel.wait_readable(self._fd)
                continue
            self._streak += 1
            if self._streak >= 16:
                self._streak = 0
                await trio.lowlevel.checkpoint()
            return data

    async def send(self, data: bytes) -> None:
        if self._fd < 0:
            await self.stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)


def _fatal(code: str, message: str) -> bytes:
    return _native.encode_error_response(
        [("S", "FATAL"), ("V", "FATAL"), ("C", code), ("M", message)]
    )


def _encode_parse(name: str, sql: str, types: list[int]) -> bytes:
    body = (
        name.encode()
        + b"\0"
        + sql.encode()
        + b"\0"
        + struct.pack(f"!h{len(types)}I", len(types), *types)
    )
    return _native.encode_pg_message(ord("P"), body)


class ProxySession:
    def __init__(self, server: ProxyServer, client: trio.abc.Stream, remote: str) -> None:
        self.server = server
        self.client = client
        self._client = _Pipe(client)
        self.remote = remote
        self.user = ""
        self.mode: Mode = "migration"
        self.shadow_database: str | None = None
        self._upstream: _Pipe | None = None
        self._client_scanner = _native.FrameScanner(MAX_MESSAGE)
        self._upstream_scanner = _native.FrameScanner()
        # Request/answer matching. The upstream's ReadyForQuery messages are counted in _state
        # (the relay's upstream pump passes them without Python); _state.edit tells it that
        # _pending holds answers to edit (changed under _pending_lock, by both directions).
        self._requests = 0
        self._state = _native.RelayState()
        self._pending: deque[_Group] = deque()
        self._pending_lock = threading.Lock()
        self._open: _Group | None = None
        # Transaction and migration state (forgotten once Postgres says idle: _idle_seen).
        self._idle_seen = 0
        self._migration_tx = False
        self._electrified_in_tx: set[Table] = set()
        #: A framework's version seen outside any transaction (priority 2, used once).
        self._session_version: str | None = None
        self._after_sync: list[str] = []
        # Extended protocol: statement -> tag to put back / framework insert; portal -> tag.
        self._plain = False  # set by _relay: plain requests pass in the scanner
        self._statement_tags: dict[str, str | None] = {}
        self._framework_statements: dict[str, tuple[str, list[str]]] = {}
        self._portal_tags: dict[str, str] = {}
        # ... and the refusals raised with a stand-in SQLSTATE (see _codes).
        self._statement_codes: dict[str, tuple[bytes, bytes]] = {}
        self._portal_codes: dict[str, tuple[bytes, bytes]] = {}

    @property
    def tx_status(self) -> str:
        """The transaction status of the last ReadyForQuery from Postgres."""
        return self._state.status

    @property
    def _syncs_sent(self) -> int:
        """Requests sent upstream that each get one ReadyForQuery, the plain Queries and Syncs
        the client scanner passed by itself included."""
        return self._requests + self._client_scanner.requests_passed

    def _add_group(self, group: _Group) -> None:
        with self._pending_lock:
            self._pending.append(group)
            self._state.edit = True

    def _forget_idle_migration(self) -> None:
        """Ends the migration transaction once Postgres has said idle since the last look."""
        idle = self._state.idle_seen
        if idle != self._idle_seen:
            self._idle_seen = idle
            self._migration_tx = False
            self._electrified_in_tx.clear()

    # ---- startup ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            with trio.fail_after(STARTUP_TIMEOUT):
                params = await self._startup()
            if params is None:
                return
            if self.mode == "prisma":
                await self._introspect()
                return
            upstream = await self._connect_upstream(params)
            if upstream is None:
                return
            try:
                await self._relay(upstream)
            finally:
                await trio.aclose_forcefully(upstream)
        except trio.TooSlowError:
            log.info("proxy client too slow to start up", remote=self.remote)
        except _ClientGone:
            pass
        except _native.ProtocolError as e:
            log.info("proxy client broke the protocol", remote=self.remote, error=str(e))
            await self._send_quietly(_fatal("08P01", f"invalid message from client: {e}"))

    async def _send_quietly(self, data: bytes) -> None:
        with trio.move_on_after(2):
            try:
                await self.client.send_all(data)
            except _GONE:
                pass

    async def _receive(self) -> bytes:
        try:
            data = await self._client.receive()
        except _GONE:
            raise _ClientGone from None
        if not data:
            raise _ClientGone
        return data

    async def _send(self, data: bytes) -> None:
        try:
            await self._client.send(data)
        except _GONE:
            raise _ClientGone from None

    async def _next_untagged(self) -> bytes:
        while True:
            body = self._client_scanner.next_untagged()
            if body is not None:
                return body
            self._client_scanner.feed(await self._receive())

    async def _next_message(self) -> tuple[int, bytes]:
        while True:
            _, tag, body = self._client_scanner.next(_ALL_TAGS)
            if tag >= 0:
                return tag, body
            self._client_scanner.feed(await self._receive())

    async def _startup(self) -> dict[str, str] | None:
        refused: set[str] = set()
        while True:
            msg = _native.parse_startup(await self._next_untagged())
            if msg[0] in ("ssl", "gss"):
                if msg[0] in refused:
                    # Postgres answers each once; a second one is a startup packet of an
                    # unknown protocol version (1234.5679 or 1234.5680) to it
                    minor = 5679 if msg[0] == "ssl" else 5680
                    await self._send_quietly(
                        _fatal(
                            "0A000",
                            f"unsupported frontend protocol 1234.{minor}:"
                            " server supports 3.0 to 3.0",
                        )
                    )
                    return None
                refused.add(msg[0])
                await self._send(b"N")
                continue
            if msg[0] == "cancel":
                await self.server.forward_cancel(msg[1], msg[2])
                return None
            break
        params = dict(msg[2])
        user = params.get("user")
        if not user:
            await self._send_quietly(
                _fatal("28000", "no PostgreSQL user name specified in startup packet")
            )
            return None
        self.user = user
        if user == "transparent":
            self.mode = "transparent"
        elif user == "prisma":
            self.mode = "prisma"
        database = params.get("database") or user
        if database.startswith("prisma_migrate_shadow_db"):
            # Prisma's shadow database: the upstream connection goes there instead
            self.mode = "shadow"
            self.shadow_database = database
        password = self.server.password
        if "password" in params:
            ok = hmac.compare_digest(params["password"].encode(), password.encode())
        else:
            salt = secrets.token_bytes(4)
            await self._send(_native.encode_authentication(5, salt))
            tag, body = await self._next_message()
            if tag != ord("p"):
                await self._send_quietly(_fatal("08P01", "expected a password message"))
                return None
            (sent,) = _native.parse_frontend(tag, body)
            inner = hashlib.md5((password + user).encode()).hexdigest()
            expected = b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()
            ok = hmac.compare_digest(sent.rstrip(b"\0"), expected)
        if not ok:
            log.info("proxy password refused", user=user, remote=self.remote)
            await self._send_quietly(
                _fatal("28P01", f'Password authentication failed for user "{user}"')
            )
            return None
        await self._send(_native.encode_authentication(0))
        return params

    async def _connect_upstream(self, params: dict[str, str]) -> trio.abc.Stream | None:
        base: ConnectParams = self.server.upstream_params
        upstream_params = msgspec.structs.replace(
            base,
            database=self.shadow_database or base.database,
            options={},
            application_name=params.get("application_name") or "electric-trio proxy",
        )
        try:
            conn = await connect(upstream_params)
        except (PgConnectError, PgAuthError, PgError, ElectricError, OSError) as e:
            log.warning("proxy cannot reach Postgres", error=str(e))
            code = getattr(e, "sqlstate", None) or "08006"
            await self._send_quietly(_fatal(code, f"the proxy cannot reach Postgres: {e}"))
            return None
        # The connection is ours from here on: its stream is relayed as raw bytes.
        stream = conn._stream
        leftover = conn._reader.take_buffered()
        out = [
            _native.encode_pg_message(ord("S"), k.encode() + b"\0" + v.encode() + b"\0")
            for k, v in conn.server_parameters.items()
        ]
        out.append(
            _native.encode_pg_message(
                ord("K"), struct.pack("!i", conn.backend_pid) + conn._secret_key
            )
        )
        out.append(_native.encode_ready_for_query(ord(conn.transaction_status)))
        if leftover:
            self._upstream_scanner.feed(leftover)
        try:
            await self._send(b"".join(out))
        except _ClientGone:
            await trio.aclose_forcefully(stream)
            raise
        self.server.session_started(self)
        return stream

    # ---- the prisma user: introspection answered here, Postgres never reached ----------------

    async def _introspect(self) -> None:
        prisma = _prisma.Introspection(self.server.schema)
        out = [
            _native.encode_parameter_status(name, value)
            for name, value in _prisma.PARAMETERS.items()
        ]
        out.append(_native.encode_backend_key_data(secrets.randbits(31), secrets.token_bytes(4)))
        out.append(_native.encode_ready_for_query(ord("I")))
        await self._send(b"".join(out))
        self.server.session_started(self)
        scanner = self._client_scanner
        replies: list[bytes] = []
        while True:
            _, tag, body = scanner.next(_ALL_TAGS)
            if tag < 0:
                if replies:
                    await self._send(b"".join(replies))
                    replies.clear()
                scanner.feed(await self._receive())
            elif tag == ord("X"):
                return
            else:
                replies.append(prisma.handle(tag, body))

    # ---- the relay ---------------------------------------------------------------------------

    async def _relay(self, upstream: trio.abc.Stream) -> None:
        """Relays until either side ends. Between plain sockets the two directions run as
        blocking loops in two threads (a thread wakes for a socket far cheaper than the Trio
        scheduler does); otherwise (TLS to Postgres) as two Trio tasks."""
        # A plain Query (see is_plain_query) needs nothing from migration mode: the scanner
        # passes it with the rest (unless each statement is traced). So does a plain Parse and
        # the Bind, Execute and Sync after it while no statement or portal is tracked.
        self._plain = self.mode in ("migration", "shadow") and not self.server.tracing
        self._client_scanner.pass_plain_queries = self._plain
        self._client_scanner.pass_plain_batches = self._plain and self._untracked()
        if (
            self.server.relay_in_threads
            and isinstance(self.client, trio.SocketStream)
            and isinstance(upstream, trio.SocketStream)
        ):
            await self._relay_in_threads(self.client, upstream)
            return
        self._upstream = _Pipe(upstream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._upstream_to_client, nursery.cancel_scope)
            await self._relay_client()
            nursery.cancel_scope.cancel()

    def _lookup_from_thread(self, request: _Lookup) -> _LookupResult:
        return trio.from_thread.run(self.server.catalog.lookup, request.tables, request.indexes)

    async def _relay_in_threads(
        self, client: trio.SocketStream, upstream: trio.SocketStream
    ) -> None:
        # Blocking twins of the two sockets (same open file, so the same O_NONBLOCK flag: the
        # Trio streams are not used again until they are closed).
        csock = socket.socket(fileno=os.dup(client.socket.fileno()))
        usock = socket.socket(fileno=os.dup(upstream.socket.fileno()))
        csock.setblocking(True)
        usock.setblocking(True)

        def shut() -> None:
            for sock in (csock, usock):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        # Each direction is a pump in Rust (the GIL released) that returns to Python only for
        # what migration mode reads or edits.
        cfd, ufd = csock.fileno(), usock.fileno()
        client_stops = b"" if self.mode == "transparent" else _MIGRATION_STOPS

        def client_to_upstream() -> None:
            try:
                while self._client_scanner.pump(cfd, ufd, client_stops):
                    out, terminated = _drive(self._drain_client(), self._lookup_from_thread)
                    if out:
                        usock.sendall(out)
                    if terminated:
                        return
            except (OSError, trio.RunFinishedError, trio.Cancelled):
                return  # a socket closed, or the service is shutting down
            except _native.ProtocolError as e:
                log.info("proxy client broke the protocol", remote=self.remote, error=str(e))
                with contextlib.suppress(OSError):
                    csock.sendall(_fatal("08P01", f"invalid message from client: {e}"))
            except ElectricError as e:
                log.warning("proxy session ends", remote=self.remote, error=str(e))
                with contextlib.suppress(OSError):
                    csock.sendall(_fatal("08006", f"the proxy lost Postgres: {e}"))
            finally:
                shut()

        def upstream_to_client() -> None:
            scanner, state = self._upstream_scanner, self._state
            try:
                while True:
                    if not state.edit and not scanner.pump(ufd, cfd, b"", state):
                        return
                    out = self._edit_upstream()
                    if out:
                        csock.sendall(out)
                    if state.edit:
                        data = usock.recv(RECV_SIZE)
                        if not data:
                            return
                        scanner.feed(data)
            except OSError:
                return
            finally:
                shut()

        async def shut_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                shut()  # wakes the threads, which then end

        # The threads are waited for, not abandoned: the pumps hold the descriptors' numbers,
        # which must not be closed (and reused) under them.
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(shut_when_cancelled)
                async with trio.open_nursery() as nursery:
                    for fn in (client_to_upstream, upstream_to_client):
                        nursery.start_soon(
                            partial(trio.to_thread.run_sync, fn, limiter=self.server.relay_threads)
                        )
                outer.cancel_scope.cancel()
        finally:
            shut()
            csock.close()
            usock.close()

    async def _to_upstream(self, data: bytes) -> None:
        assert self._upstream is not None
        try:
            await self._upstream.send(data)
        except _GONE:
            raise _ClientGone from None  # upstream gone: end the session

    async def _relay_client(self) -> None:
        try:
            await self._client_to_upstream()
        except _ClientGone:
            pass
        except _native.ProtocolError as e:
            log.info("proxy client broke the protocol", remote=self.remote, error=str(e))
            await self._send_quietly(_fatal("08P01", f"invalid message from client: {e}"))
        except ElectricError as e:  # the catalogue look-up failed: Postgres is unreachable
            log.warning("proxy session ends", remote=self.remote, error=str(e))
            await self._send_quietly(_fatal("08006", f"the proxy lost Postgres: {e}"))

    async def _client_to_upstream(self) -> None:
        while True:
            steps = self._drain_client()
            try:
                request = next(steps)
                while True:
                    found = await self.server.catalog.lookup(request.tables, request.indexes)
                    request = steps.send(found)
            except StopIteration as stop:
                out, terminated = stop.value
            if out:
                await self._to_upstream(out)
            if terminated:
                return
            self._client_scanner.feed(await self._receive())

    # ---- client -> upstream: what migration mode reads and rewrites --------------------------

    def _drain_client(self) -> Generator[_Lookup, _LookupResult, tuple[bytes, bool]]:
        """Consumes the whole client messages buffered; returns the bytes to send upstream and
        whether the client said goodbye. Yields a catalogue question when it has one (the
        caller sends the answer back)."""
        scanner = self._client_scanner
        if self.mode == "transparent":
            return scanner.next(b"")[0], False
        out: list[bytes] = []
        while True:
            scanner.pass_plain_batches = self._plain and self._untracked()
            passed, tag, body = scanner.next(_MIGRATION_STOPS)
            if passed:
                out.append(passed)
            if tag < 0:
                return b"".join(out), False
            raw = _native.encode_pg_message(tag, body)
            if tag == ord("X"):
                out.append(raw)
                return b"".join(out), True
            if tag == ord("Q"):
                (sql,) = _native.parse_frontend(tag, body)
                self._requests += 1
                parsed = _analyse.parse(sql)
                if parsed.statements is None:
                    sent = raw
                elif self.mode == "shadow":
                    sent = self._shadow_query(parsed, raw)
                else:
                    found = yield _Lookup(parsed.tables, parsed.indexes)
                    sent = self._query(parsed, raw, found)
                out.append(sent)
                if self.server.tracing:
                    self._trace("Query", sql, sent, raw)
            elif tag == ord("P"):
                name, sql, types = _native.parse_frontend(tag, body)
                self._statement_tags.pop(name, None)
                self._statement_codes.pop(name, None)
                self._framework_statements.pop(name, None)
                parsed = _analyse.parse(sql, extended=True)
                if parsed.framework_insert is not None:
                    self._framework_statements[name] = parsed.framework_insert
                if parsed.statements is None or self.mode == "shadow":
                    sent = raw
                else:
                    found = yield _Lookup(parsed.tables, parsed.indexes)
                    sent = self._parse(name, types, parsed, raw, found)
                out.append(sent)
                if self.server.tracing:
                    self._trace("Parse", sql, sent, raw)
            elif tag == ord("B"):
                portal, statement, formats, params, _ = _native.parse_frontend(tag, body)
                _set(self._portal_tags, portal, self._statement_tags.get(statement))
                _set(self._portal_codes, portal, self._statement_codes.get(statement))
                insert = self._framework_statements.get(statement)
                if insert is not None:
                    self._framework_version(_analyse.framework_version(insert, params, formats))
                out.append(raw)
            elif tag == ord("E"):
                portal, _ = _native.parse_frontend(tag, body)
                self._execute(self._portal_tags.get(portal))
                codes = self._portal_codes.get(portal)
                if codes is not None:
                    self._edit_batch().error_code = codes
                out.append(raw)
            else:  # Sync
                self._requests += 1
                self._open = None
                out.append(raw)
                out.extend(self._hidden_query(sql) for sql in self._after_sync)
                self._after_sync.clear()

    def _trace(self, kind: str, sql: str, sent: bytes, raw: bytes) -> None:
        """``PROXY_TRACING_ENABLE``: one log line per statement message, with the rewrite."""
        rewritten = None if sent == raw else sent[5:].decode(errors="replace").rstrip("\0")
        log.info(
            "proxy trace",
            remote=self.remote,
            user=self.user,
            message=kind,
            sql=sql,
            rewritten_to=rewritten,
        )

    def _hidden_query(self, sql: str) -> bytes:
        self._requests += 1
        self._add_group(_Group(seq=self._syncs_sent, hidden=True))
        return _native.encode_query(sql)

    def _untracked(self) -> bool:
        """No statement, portal or batch of the client's that the relay must follow."""
        return not (
            self._statement_tags
            or self._statement_codes
            or self._framework_statements
            or self._portal_tags
            or self._portal_codes
            or self._open is not None
            or self._after_sync
        )

    def _edit_batch(self, later: int = 0) -> _Group:
        """The group of the extended-protocol batch being received, created when first needed
        (after as many kept tags as Executes in the batch so far, but the ``later`` last)."""
        if self._open is None:
            self._open = _Group(seq=self._syncs_sent + 1)
            self._open.tags.extend([None] * (self._client_scanner.batch_executes - later))
            self._add_group(self._open)
        return self._open

    def _execute(self, tag: str | None) -> None:
        """An Execute (already counted by the scanner) whose command tag becomes ``tag``."""
        if tag is not None:
            self._edit_batch(later=1)
        if self._open is not None:
            self._open.tags.append(tag)

    def _framework_version(self, version: str | None) -> None:
        if version is None:
            return
        self._forget_idle_migration()
        if self.tx_status == "I":
            self._session_version = version
        elif self._migration_tx:
            self._after_sync.append(
                f"CALL electric.assign_migration_version({_analyse.quote(version)}, 4)"
            )

    def _version(self) -> tuple[str, int]:
        if self._session_version is not None:
            return (self._session_version, 2)
        return (_analyse.generated_version(), 0)

    def _plan(
        self, parsed: _analyse.Parsed, found: _LookupResult, *, extended: bool
    ) -> _analyse.Plan:
        electrified, index_tables = found
        self._forget_idle_migration()
        plan = _analyse.plan(
            parsed,
            electrified | self._electrified_in_tx,
            index_tables,
            version=self._version(),
            features=self.server.features,
            extended=extended,
        )
        if plan.migration:
            self._migration_tx = True
            self._session_version = None
            self._electrified_in_tx |= plan.electrified
        if plan.rejection is not None:
            log.info(
                "proxy refused a statement",
                code=plan.rejection.code,
                message=plan.rejection.message,
            )
        return plan

    def _shadow_query(self, parsed: _analyse.Parsed, raw: bytes) -> bytes:
        plan = _analyse.shadow_plan(parsed)
        if not plan.changed:
            return raw
        self._add_group(_Group(seq=self._syncs_sent, tags=deque(plan.tags)))
        return _native.encode_query(plan.sql)

    def _query(self, parsed: _analyse.Parsed, raw: bytes, found: _LookupResult) -> bytes:
        plan = self._plan(parsed, found, extended=False)
        if plan.rejection is not None:
            self._add_group(_Group(seq=self._syncs_sent, error_code=_codes(plan)))
            return _native.encode_query(_analyse.rejection_sql(plan.rejection))
        if not plan.changed:
            return raw
        self._add_group(_Group(seq=self._syncs_sent, tags=deque(plan.tags)))
        return _native.encode_query(plan.sql)

    def _parse(
        self,
        name: str,
        types: list[int],
        parsed: _analyse.Parsed,
        raw: bytes,
        found: _LookupResult,
    ) -> bytes:
        plan = self._plan(parsed, found, extended=True)
        if plan.rejection is not None:
            codes = self._edit_batch().error_code = _codes(plan)
            if codes is not None:
                self._statement_codes[name] = codes
            return _encode_parse(name, _analyse.rejection_sql(plan.rejection), [])
        if not plan.changed or len(plan.statements) != 1:
            return raw
        self._statement_tags[name] = plan.tags[0]
        return _encode_parse(name, plan.sql, types)

    # ---- upstream -> client ------------------------------------------------------------------

    async def _upstream_to_client(self, cancel_scope: trio.CancelScope) -> None:
        assert self._upstream is not None
        try:
            while True:
                out = self._edit_upstream()
                if out:
                    await self._send(out)
                data = await self._upstream.receive()
                if not data:
                    break
                self._upstream_scanner.feed(data)
        except _GONE:
            pass
        except _ClientGone:
            pass
        # Postgres ended the session (or we lost it): so does the client's.
        cancel_scope.cancel()

    def _edit_upstream(self) -> bytes:
        """The buffered whole server messages as the client must see them."""
        scanner = self._upstream_scanner
        out: list[bytes] = []
        while True:
            group = self._pending[0] if self._pending else None
            active = group is not None and group.seq == self._state.ready_seen + 1
            if not active:
                stop = b"Z"
            elif group is not None and group.hidden:
                stop = _ALL_TAGS
            else:
                stop = b"CZIsEN"
            passed, tag, body = scanner.next(stop)
            if passed:
                out.append(passed)
            if tag < 0:
                return b"".join(out)
            if tag == ord("Z"):
                self._state.ready(body[0] if body else ord("I"))
                if active:
                    assert group is not None
                    with self._pending_lock:
                        self._pending.popleft()
                        self._state.edit = bool(self._pending)
                    if group.hidden:
                        continue
                out.append(_native.encode_pg_message(tag, body))
                continue
            assert group is not None
            if group.hidden:
                continue
            if tag in (ord("E"), ord("N")):
                code = group.error_code if tag == ord("E") else None
                out.append(_without_our_context(tag, body, code))
                continue
            replacement = group.tags.popleft() if group.tags else None
            if replacement is None or tag != ord("C"):
                out.append(_native.encode_pg_message(tag, body))
            elif replacement != _DROP:
                out.append(_native.encode_command_complete(replacement))


@dataclass(frozen=True)
class _Lookup:
    tables: set[Table]
    indexes: set[tuple[str | None, str]]


_LookupResult = tuple[set[Table], dict[tuple[str | None, str], Table]]


def _set(tracked: dict[str, _T], key: str, value: _T | None) -> None:
    """Keeps ``value`` under ``key``; None is kept as no entry (so an empty dict means that
    nothing is tracked)."""
    if value is None:
        tracked.pop(key, None)
    else:
        tracked[key] = value


def _drive(
    steps: Generator[_Lookup, _LookupResult, tuple[bytes, bool]],
    lookup: Callable[[_Lookup], _LookupResult],
) -> tuple[bytes, bool]:
    """Runs :meth:`ProxySession._drain_client` answering its questions with ``lookup``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(lookup(request))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# Fields that describe our rewrite rather than the client's SQL: where in the DO block (W), the
# statement run inside it (q, p) and a position in our text (P).
_OUR_FIELDS = frozenset(b"WqpP")


def _codes(plan: _analyse.Plan) -> tuple[bytes, bytes] | None:
    assert plan.rejection is not None
    raised = _analyse.raised_code(plan.rejection.code)
    if raised == plan.rejection.code:
        return None
    return (b"C" + raised.encode(), b"C" + plan.rejection.code.encode())


def _without_our_context(tag: int, body: bytes, codes: tuple[bytes, bytes] | None = None) -> bytes:
    """An ErrorResponse / NoticeResponse from a rewritten request, without the fields that
    would show the client the proxy's DO block (bytes kept as they are: any encoding), and
    with the SQLSTATE ``codes[0]`` turned into ``codes[1]``."""
    kept = [item for item in body.split(b"\0") if item and item[0] not in _OUR_FIELDS]
    if codes is not None:
        kept = [codes[1] if item == codes[0] else item for item in kept]
    return _native.encode_pg_message(tag, b"".join(item + b"\0" for item in kept) + b"\0")
