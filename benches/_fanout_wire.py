"""Pure helpers of the fanout benchmark: the few bytes its cheap clients read and write.

The clients of ``python -m benches fanout`` skip every general-purpose layer on their hot path:
server frames are unmasked WebSocket frames read with :func:`parse_frames`, and of a
``SatOpLog`` only its begin is read (:func:`oplog_begin`: commit time, LSN, transaction id).
Latencies go into a :class:`Histogram` of 0.1 ms buckets that client processes can merge.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: The Satellite type byte of ``SatOpLog`` (satellite-protocol.md §2).
SAT_OP_LOG = 9

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class FrameError(ValueError):
    """Bytes that are not a server's WebSocket frame, or a SatOpLog without a begin."""


def parse_frames(data: bytes, start: int = 0) -> tuple[list[tuple[bool, int, bytes]], int]:
    """The complete server frames in ``data[start:]`` as ``(fin, opcode, payload)``, and the
    offset of the first byte not consumed (a frame cut short stays for the next read).

    Server frames are never masked (RFC 6455 §5.1); a masked one is a :class:`FrameError`.
    """
    frames: list[tuple[bool, int, bytes]] = []
    pos, end = start, len(data)
    while end - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        if b1 & 0x80:
            raise FrameError("a server frame is masked")
        length = b1 & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            head = 4
        elif length == 127:
            if end - pos < 10:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            head = 10
        if end - pos < head + length:
            break
        frames.append((bool(b0 & 0x80), b0 & 0x0F, bytes(data[pos + head : pos + head + length])))
        pos += head + length
    return frames, pos


def server_frame_header(length: int) -> bytes:
    """The header of a final, unmasked binary frame of ``length`` bytes: what a server writes
    before a message's payload (RFC 6455 §5.2), the same for every recipient."""
    if length < 126:
        return bytes((0x80 | OP_BINARY, length))
    if length < 1 << 16:
        return bytes((0x80 | OP_BINARY, 126)) + length.to_bytes(2, "big")
    return bytes((0x80 | OP_BINARY, 127)) + length.to_bytes(8, "big")


#: The masking key of the benchmark clients' frames: masking with it changes nothing, so a frame
#: costs its client no per-byte work (the key's randomness protects intermediaries, and there
#: is none on the loopback); the servers unmask it as they unmask any other.
ZERO_MASK = bytes(4)


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final client frame: masked, as RFC 6455 requires of clients (a random key unless
    ``mask`` gives one)."""
    key = os.urandom(4) if mask is None else mask
    if len(key) != 4:
        raise ValueError("a masking key has 4 bytes")
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if key == ZERO_MASK:
        return head + key + payload
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: its value and the offset after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise FrameError("a varint runs past the end")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Begin(NamedTuple):
    """What a client reads of a transaction: the begin of its ``SatOpLog`` frame."""

    commit_timestamp: int
    """Milliseconds since 1970."""
    lsn: bytes
    transaction_id: int
    timestamp_at: int
    """Where the commit timestamp's varint starts in the frame."""
    timestamp_len: int


def oplog_begin(frame: bytes) -> Begin | None:
    """The begin of a ``SatOpLog`` frame (type byte + protobuf), or None when its first op is
    not a begin (an empty ``SatOpLog``, as the end of a subscription's data may be)."""
    if not frame or frame[0] != SAT_OP_LOG:
        raise FrameError("not a SatOpLog frame")
    # SatOpLog.ops (field 1) -> SatTransOp.begin (field 1) -> SatOpBegin fields.
    if len(frame) < 2 or frame[1] != 0x0A:
        return None
    _, pos = _varint(frame, 2)
    if pos >= len(frame) or frame[pos] != 0x0A:
        return None
    size, pos = _varint(frame, pos + 1)
    end = pos + size
    if end > len(frame):
        raise FrameError("a begin runs past the end")
    timestamp, lsn, transaction_id, at, length = 0, b"", 0, -1, 0
    while pos < end:
        key, pos = _varint(frame, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            start = pos
            value, pos = _varint(frame, pos)
            if field == 1:
                timestamp, at, length = value, start, pos - start
            elif field == 7:
                transaction_id = value
        elif wire == 2:
            size, pos = _varint(frame, pos)
            if field == 3:
                lsn = bytes(frame[pos : pos + size])
            pos += size
        else:
            raise FrameError(f"unexpected wire type {wire} in a begin")
    return Begin(timestamp, lsn, transaction_id, at, length)


def with_commit_timestamp(frame: bytes, timestamp_ms: int) -> bytes:
    """``frame`` with its begin's commit timestamp replaced; the frame keeps its length, so the
    new value must take as many varint bytes as the old one (any ms time of this century does)."""
    begin = oplog_begin(frame)
    if begin is None or begin.timestamp_at < 0:
        raise FrameError("the frame has no begin with a commit timestamp")
    value = encode_varint(timestamp_ms)
    if len(value) != begin.timestamp_len:
        raise FrameError("the new timestamp does not fit in the old one's bytes")
    at = begin.timestamp_at
    return frame[:at] + value + frame[at + begin.timestamp_len :]


def insecure_token(**claims: object) -> str:
    """An unsigned JWT (``alg: none``), what ``AUTH_MODE=insecure`` accepts."""

    def part(data: Mapping[str, object]) -> str:
        raw = json.dumps(dict(data), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}."


class Histogram:
    """Latencies in buckets of 0.1 ms (negative ones, clock granularity, count as 0)."""

    SCALE = 10

    def __init__(self, buckets: Mapping[int, int] | None = None) -> None:
        self.buckets: Counter[int] = Counter(buckets or {})

    def add(self, ms: float) -> None:
        self.buckets[max(0, int(ms * self.SCALE))] += 1

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def percentile(self, q: float) -> float:
        """The least latency (ms, at bucket resolution) that ``q`` percent of samples do not
        exceed."""
        total = self.count
        if not total:
            raise ValueError("no samples")
        rank = max(1, -(-total * q // 100))
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return (bucket + 1) / self.SCALE
        raise AssertionError("unreachable")

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.buckets.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> Histogram:
        return cls({int(k): v for k, v in data.items()})

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out
