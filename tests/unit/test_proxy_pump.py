"""The relay's fast path in Rust: plain queries passed without Python, and the pumps that move
bytes between two sockets with the GIL released."""

from __future__ import annotations

import socket
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from electric_trio import _native
from electric_trio.proxy._analyse import parse


def is_plain(sql: str) -> bool:
    scanner = _native.FrameScanner()
    scanner.pass_plain_queries = True
    query = _native.encode_query(sql)
    scanner.feed(query)
    passed, tag, _ = scanner.next(b"Q")
    assert (passed, tag) in ((query, -1), (b"", ord("Q")))
    assert scanner.requests_passed == (tag == -1)
    return tag == -1


def test_plain_queries_pass_and_others_stop() -> None:
    assert is_plain("SELECT abalance FROM pgbench_accounts WHERE aid = 7;")
    assert is_plain("begin")
    assert is_plain("INSERT INTO t VALUES (1)")
    assert not is_plain("ALTER TABLE t ENABLE ELECTRIC")
    assert not is_plain("SELECT 1; DROP TABLE t")
    assert not is_plain("CALL electric.electrify('t')")
    assert not is_plain("select 1 as electric")  # conservative: Python reads it
    scanner = _native.FrameScanner()
    q = _native.encode_query("SELECT 1")
    scanner.feed(q)
    assert scanner.next(b"Q") == (b"", ord("Q"), b"SELECT 1\0")  # off unless asked


WORDS = st.sampled_from(
    "SELECT select INSERT update delete WITH values TABLE begin start commit end rollback set show"
    " savepoint release reset ALTER drop create CALL do electric ELECTRIC enable grant index"
    " TABLE t items 1 'a;b' ; ( ) * , = $$ -- /* */ \n".split(" ")
)


@given(st.lists(WORDS, max_size=8).map(" ".join) | st.text(max_size=40))
@settings(max_examples=400, deadline=None)
def test_a_plain_query_is_one_migration_mode_forwards_untouched(sql: str) -> None:
    if "\0" in sql:
        return
    if is_plain(sql):
        assert parse(sql).statements is None, sql


def test_client_pump_relays_and_stops_at_what_python_reads() -> None:
    a, proxy_in = socket.socketpair()
    proxy_out, b = socket.socketpair()
    scanner = _native.FrameScanner()
    scanner.pass_plain_queries = True
    plain = _native.encode_query("SELECT 1") + _native.encode_sync()
    ddl = _native.encode_query("DROP TABLE t")
    with a, proxy_in, proxy_out, b:
        a.sendall(plain * 3 + ddl + plain)
        assert scanner.pump(proxy_in.fileno(), proxy_out.fileno(), b"QPBESX") is True
        _, tag, body = scanner.next(b"QPBESX")
        assert (tag, body) == (ord("S"), b"")  # a Sync is Python's
        b.settimeout(5)
        assert b.recv(65536) == _native.encode_query("SELECT 1")
        assert scanner.requests_passed == 1
        a.shutdown(socket.SHUT_WR)
        assert scanner.pump(proxy_in.fileno(), proxy_out.fileno(), b"") is False
        assert scanner.buffered == 0
        proxy_out.shutdown(socket.SHUT_WR)
        rest = b"".join(iter(lambda: b.recv(65536), b""))
        assert rest == plain * 2 + ddl + plain  # the Sync taken by next() is not in it


def test_upstream_pump_counts_ready_and_yields_to_python() -> None:
    pg, proxy_in = socket.socketpair()
    proxy_out, client = socket.socketpair()
    scanner = _native.FrameScanner()
    state = _native.RelayState()
    answer = (
        _native.encode_command_complete("SELECT 1")
        + _native.encode_ready_for_query(ord("T"))
        + _native.encode_ready_for_query(ord("I"))
    )
    with pg, proxy_in, proxy_out, client:
        pg.sendall(answer)
        done: list[bool] = []
        pump = threading.Thread(
            target=lambda: done.append(
                scanner.pump(proxy_in.fileno(), proxy_out.fileno(), b"", state)
            )
        )
        pump.start()
        client.settimeout(5)
        received = b""
        while len(received) < len(answer):
            received += client.recv(65536)
        assert received == answer
        # Python now has answers to edit: the pump hands over at the next bytes.
        state.edit = True
        pg.sendall(_native.encode_ready_for_query(ord("I")))
        pump.join(5)
        assert done == [True]
        assert (state.ready_seen, state.status, state.idle_seen) == (2, "I", 1)
        assert scanner.next(b"Z") == (b"", ord("Z"), b"I")
        assert scanner.pump(proxy_in.fileno(), proxy_out.fileno(), b"", state) is True


def test_plain_batches_pass_while_nothing_is_tracked() -> None:
    scanner = _native.FrameScanner()
    plain = _native.encode_extended_query("SELECT $1::int", [], [b"1"])
    insert = _native.encode_extended_query("INSERT INTO schema_migrations VALUES ($1)", [], [b"1"])
    scanner.feed(plain + insert)
    assert scanner.next(b"QPBES")[1] == ord("P")  # off unless asked
    scanner = _native.FrameScanner()
    scanner.pass_plain_batches = True
    scanner.feed(plain + insert)
    passed, tag, _ = scanner.next(b"QPBES")
    assert (passed, tag) == (plain, ord("P"))  # an INSERT's Parse is Python's
    assert (scanner.requests_passed, scanner.batch_executes) == (1, 0)
    scanner.pass_plain_batches = False  # Python now follows the batch
    passed, tag, _ = scanner.next(b"E")  # Bind and Describe passed, the Execute returned...
    assert tag == ord("E")
    assert scanner.batch_executes == 1  # ... and counted
    assert scanner.next(b"QPBES")[1] == ord("S")
    assert (scanner.requests_passed, scanner.batch_executes) == (1, 0)
    scanner.pass_plain_batches = True
    scanner.feed(plain + plain[:-5])
    assert scanner.next(b"QPBES") == (plain + plain[:-5], -1, b"")
    assert (scanner.requests_passed, scanner.batch_executes) == (2, 1)
