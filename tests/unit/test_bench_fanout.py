"""The fanout benchmark's wire helpers: frames as its clients read and write them, the begin of
a SatOpLog, the timestamp rewrite of the floor, latency percentiles. Nothing is timed here."""

from __future__ import annotations

import base64
import json

import pytest
import wsproto
import wsproto.events
from benches import BENCHMARKS, fanout
from benches._fanout_profile import frame_name, summarize
from benches._fanout_wire import (
    OP_BINARY,
    OP_PING,
    ZERO_MASK,
    FrameError,
    Histogram,
    client_frame,
    encode_varint,
    insecure_token,
    oplog_begin,
    parse_frames,
    server_frame_header,
    with_commit_timestamp,
)

from electric_trio.satellite import messages as m

TS = 1_764_165_000_123


def oplog(ts: int = TS, txid: int | None = 777, lsn: bytes = b"12345") -> bytes:
    begin = m.SatOpBegin(commit_timestamp=ts, lsn=lsn, origin="postgres_1", transaction_id=txid)
    insert = m.SatOpInsert(
        relation_id=16384, row_data=m.SatOpRow(nulls_bitmask=b"\x00", values=(b"1", b"a"))
    )
    return m.encode(
        m.SatOpLog(
            ops=(
                m.SatTransOp(begin=begin),
                m.SatTransOp(insert=insert),
                m.SatTransOp(commit=m.SatOpCommit(commit_timestamp=ts, lsn=lsn)),
            )
        )
    )


def wsproto_server() -> wsproto.WSConnection:
    """A wsproto server connection past the handshake."""
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(
        b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert isinstance(next(server.events()), wsproto.events.Request)
    server.send(wsproto.events.AcceptConnection())
    return server


def server_frames(*payloads: bytes) -> bytes:
    """Frames as a wsproto server writes them (unmasked)."""
    server = wsproto_server()
    return b"".join(server.send(wsproto.events.Message(data=p)) for p in payloads)


def test_the_benchmark_is_registered() -> None:
    assert BENCHMARKS["fanout"] == "benches.fanout"


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 70000])
def test_parse_frames_reads_what_wsproto_writes(size: int) -> None:
    payloads = [bytes([2]) * size, b"second"]
    data = server_frames(*payloads)
    frames, used = parse_frames(data)
    assert frames == [(True, OP_BINARY, p) for p in payloads]
    assert used == len(data)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_a_prebuilt_frame_is_what_wsproto_sends(size: int) -> None:
    payload = b"\x09" * size
    assert server_frame_header(size) + payload == server_frames(payload)


def test_parse_frames_leaves_a_partial_frame() -> None:
    data = server_frames(b"x" * 300, b"y" * 10)
    for cut in range(len(data)):
        frames, used = parse_frames(data[:cut])
        rest_frames, rest_used = parse_frames(data[:used] + data[used:], used)
        assert [f[2] for f in frames + rest_frames] == [b"x" * 300, b"y" * 10]
        assert rest_used == len(data)
    with pytest.raises(FrameError):
        parse_frames(client_frame(OP_BINARY, b"masked"))


@pytest.mark.parametrize("mask", [None, ZERO_MASK])
@pytest.mark.parametrize("size", [0, 3, 125, 126, 70000])
def test_client_frames_are_read_by_a_wsproto_server(size: int, mask: bytes | None) -> None:
    server = wsproto_server()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    server.receive_data(client_frame(OP_BINARY, payload, mask) + client_frame(OP_PING, b"p", mask))
    events = list(server.events())
    assert isinstance(events[0], wsproto.events.BytesMessage)
    assert events[0].data == payload
    assert isinstance(events[1], wsproto.events.Ping)
    assert client_frame(OP_BINARY, b"ab", b"\x00\x00\x00\x00")[-2:] == b"ab"


def test_oplog_begin() -> None:
    frame = oplog()
    begin = oplog_begin(frame)
    assert begin is not None
    assert (begin.commit_timestamp, begin.transaction_id, begin.lsn) == (TS, 777, b"12345")
    assert frame[begin.timestamp_at : begin.timestamp_at + begin.timestamp_len] == (
        encode_varint(TS)
    )
    assert oplog_begin(m.encode(m.SatOpLog())) is None
    without_id = oplog_begin(oplog(txid=None))
    assert without_id is not None
    assert without_id.transaction_id == 0
    with pytest.raises(FrameError):
        oplog_begin(m.encode(m.SatSubsDataEnd()))


def test_with_commit_timestamp_keeps_everything_else() -> None:
    frame = oplog()
    moved = with_commit_timestamp(frame, TS + 5_000)
    assert len(moved) == len(frame)
    decoded = m.decode(moved)
    assert isinstance(decoded, m.SatOpLog)
    expected = m.decode(oplog())
    assert isinstance(expected, m.SatOpLog)
    begin = expected.ops[0].begin
    assert begin is not None
    assert decoded.ops[1:] == expected.ops[1:]
    assert decoded.ops[0].begin == m.SatOpBegin(
        commit_timestamp=TS + 5_000,
        lsn=begin.lsn,
        origin=begin.origin,
        transaction_id=begin.transaction_id,
    )
    with pytest.raises(FrameError):
        with_commit_timestamp(frame, 5)


def test_varints() -> None:
    for value in (0, 1, 127, 128, 300, TS, 2**63):
        frame = bytes([9, 0x0A, 0x0B, 0x0A, 0x09, 0x08]) + encode_varint(value)
        frame = frame[:4] + bytes([len(frame) - 5]) + frame[5:]
        frame = frame[:2] + bytes([len(frame) - 3]) + frame[3:]
        begin = oplog_begin(frame)
        assert begin is not None
        assert begin.commit_timestamp == value


def test_histogram_percentiles_and_merge() -> None:
    a, b = Histogram(), Histogram()
    for ms in range(1, 51):
        a.add(ms)
    for ms in range(51, 101):
        b.add(ms)
    b.add(-3.0)  # a receipt stamped before a ms-truncated commit time
    merged = Histogram.merged([a, Histogram.from_json(json.loads(json.dumps(b.to_json())))])
    assert merged.count == 101
    assert merged.percentile(50) == pytest.approx(50.1)
    assert merged.percentile(99) == pytest.approx(99.1)
    assert merged.percentile(100) == pytest.approx(100.1)
    assert Histogram({0: 1}).percentile(1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no samples"):
        Histogram().percentile(50)


def test_insecure_token() -> None:
    header, claims, signature = insecure_token(sub="bench").split(".")
    assert signature == ""

    def load(part: str) -> object:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    assert load(header) == {"alg": "none"}
    assert load(claims) == {"sub": "bench"}


def test_profile_summary() -> None:
    lines = [
        "<module> (electric-trio:8);run (trio/_run.py:10);send (satellite/session.py:5) 6",
        "<module> (electric-trio:8);run (trio/_run.py:11);process (x/stream.py:3) 3",
        "<module> (electric-trio:8);run (trio/_run.py:10) 1",
        "not a stack line",
    ]
    total, inclusive, own = summarize(lines, top=3)
    assert total == 10
    assert inclusive[0] == ("<module> (electric-trio)", 1.0)
    assert inclusive[1] == ("run (trio/_run.py)", 1.0)
    assert inclusive[2] == ("send (satellite/session.py)", 0.6)
    assert own == [
        ("send (satellite/session.py)", 0.6),
        ("process (x/stream.py)", 0.3),
        ("run (trio/_run.py)", 0.1),
    ]
    assert frame_name("f (/a/b/c/d.py:12)") == "f (c/d.py)"
    assert summarize([]) == (0, [], [])


def test_the_paced_rates_option() -> None:
    assert fanout._parse(["--rates", "2,7.5", "--quick"]).rates == (2.0, 7.5)
    args = fanout._parse([])
    assert (args.rates, args.clients, args.repeat, args.record) == ((1.0, 5.0), 1000, 2, True)
    with pytest.raises(SystemExit):
        fanout._parse(["--rates", "0"])


def test_the_floors_option_runs_a_part_and_records_nothing() -> None:
    assert fanout._parse([]).floors == ("writers", "broadcaster", "prebuilt")
    args = fanout._parse(["--floors", "prebuilt"])
    assert (args.floors, args.record) == (("prebuilt",), False)
    assert fanout._parse(["--floors", "none"]).floors == ()
    with pytest.raises(SystemExit):
        fanout._parse(["--floors", "nope"])


def test_per_transaction_figures_merge_across_client_processes() -> None:
    one = [[7, 1000, 500, 12.0, 1.0, 1.02], [8, 1200, 500, 9.0, 1.2, 1.21]]
    two = [[7, 1000, 500, 30.0, 1.001, 1.03]]
    assert fanout._merge_per_txn([one, two]) == [
        [7, 1000, 1000, 30.0, 1.0, 1.03],
        [8, 1200, 500, 9.0, 1.2, 1.21],
    ]
