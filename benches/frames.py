"""Satellite frames: the service's codec (Rust, through the msgspec models) against the
``protobuf`` package, encode and decode of the same frames in the same process.

*Ours* is the codec as the service uses it for the frames it reads and writes outside the read
path: :func:`electric_trio.satellite.messages.decode` (the Rust codec reads the protobuf bytes
straight into the frozen msgspec Structs, every field built) and
:func:`~electric_trio.satellite.messages.encode` (the Rust codec writes the bytes from the
Structs' attributes). *protobuf*: the classes that ``protoc``
(from ``grpcio-tools``) generates from ``proto/satellite.proto``, generated into a temporary
directory when the benchmark starts, run by ``protobuf``'s own backend (``upb``, C);
``FromString`` of the bytes after the type byte, ``SerializeToString`` with the type byte put in
front. The frames: a ``SatOpLog`` of 10 inserts (a begin, 10 inserts of a 6-column row with a
tag each, a commit), the same with 1,000 inserts, a ``SatRelation`` of 6 columns and a
``SatRpcRequest`` ``subscribe`` whose body, a ``SatSubsReq`` of one shape with a where clause
and an include, is encoded (decoded) too. Before timing, each side must decode the other's bytes
to the same message, and both must encode to the same bytes.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from electric_trio import _native
from electric_trio.satellite import messages as m

from ._harness import (
    REPO_ROOT,
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    parse_args,
    write_section,
)

NAME = "frames"
TARGET = 1.0
#: The timed operations (Case methods ours_X / peer_X) and their figures' names. The decode
#: alone is not judged: upb's is lazy (a field's Python object is made when it is read), ours
#: builds every object, so the like-for-like decode figure is the one that reads every field.
OPERATIONS = {
    "decode_read": "decode and read every field:",
    "decode": "decode alone (protobuf lazy; not judged):",
    "encode": "encode",
}
PROTO = REPO_ROOT / "proto" / "satellite.proto"

DESCRIPTION = """\
Satellite frames encoded and decoded in one process, by the service's codec and by the `protobuf`
package. *Ours*: `messages.decode(frame)` (the Rust codec reads the bytes straight into the frozen
msgspec Structs the service works with, every field a Python object) and `messages.encode(message)`
(the Rust codec writes the bytes from the Structs), as the service does for every frame outside the
read path's `SatOpLog` (built in Rust from the transaction). *protobuf* {version} ({backend}
backend): the classes `protoc` (grpcio-tools) generates from `proto/satellite.proto`, `FromString`
of the bytes after the type byte (upb parses into its arena and makes a Python object of a field
only when it is read, which the timed decode does not do), `SerializeToString` with the type byte
put in front. Frames: `SatOpLog` of a begin, 10 (1,000) inserts of a 6-column row (int8, int4, text
of 32 characters, float8, bool, timestamptz, as the text values the protocol carries) with one tag
each, and a commit; `SatRelation` of 6 columns; `SatRpcRequest` `subscribe` with its `SatSubsReq`
body (one shape, a where clause, one include) encoded and decoded as well. Before timing, each side
decodes the other's bytes to the same message and both encode the same bytes. {repeat} timed runs of
about {seconds:g} s per side and figure, each cut into {slices} slices that alternate with the other
side's (both sides meet the same load of a shared machine); the figure is the best run, its
wall-clock rate (the CPU time per message of the same runs is among the facts). *Decode and read
every field*, the judged decode figure: each side decodes the frame and then reads every field of
the .proto once, recursively, by name through its own API, as any consumer of a frame reads what it
decoded (ours: the Struct attribute, None when unset; protobuf: the attribute, after `HasField` for
a field with presence and `WhichOneof` for a oneof), from a list of fields per message made before
timing; both readers read the same values (checked before timing). *Decode alone* is shown beside
it, not judged, because upb's decode defers the work ours does.
"""


# -- the frames ------------------------------------------------------------------------------


def _row(i: int) -> tuple[bytes, ...]:
    return (
        str(1_000_000 + i).encode(),
        str(i * 7919 % 1_000_003).encode(),
        (f"{i:08x}" * 4).encode(),
        repr(i / 7.0).encode(),
        b"t" if i % 3 == 0 else b"f",
        b"2024-01-01 00:00:00.000Z",
    )


def oplog(rows: int) -> m.SatOpLog:
    """A transaction of ``rows`` inserts, as the read path sends them."""
    lsn = (123_456_789).to_bytes(8, "big")
    begin = m.SatOpBegin(commit_timestamp=1_700_000_000_000, lsn=lsn, transaction_id=4242)
    commit = m.SatOpCommit(commit_timestamp=1_700_000_000_000, lsn=lsn, transaction_id=4242)
    inserts = tuple(
        m.SatTransOp(
            insert=m.SatOpInsert(
                relation_id=16_384,
                row_data=m.SatOpRow(nulls_bitmask=b"\x00", values=_row(i)),
                tags=(f"postgres_1@{1_700_000_000_000 + i}",),
            )
        )
        for i in range(rows)
    )
    return m.SatOpLog(ops=(m.SatTransOp(begin=begin), *inserts, m.SatTransOp(commit=commit)))


def relation() -> m.SatRelation:
    columns = [("id", "int8"), ("n", "int4"), ("label", "text"), ("x", "float8")]
    columns += [("flag", "bool"), ("ts", "timestamptz")]
    return m.SatRelation(
        schema_name="public",
        table_name="items",
        relation_id=16_384,
        columns=tuple(
            m.SatRelationColumn(name=name, type=t, primary_key=name == "id", is_nullable=i > 1)
            for i, (name, t) in enumerate(columns)
        ),
    )


def subscribe() -> tuple[m.SatRpcRequest, m.SatSubsReq]:
    include = m.SatShapeDefRelation(
        foreign_key=("project_id",),
        select=m.SatShapeDefSelect(tablename="issues", where="this.status <> 'closed'"),
    )
    body = m.SatSubsReq(
        subscription_id="0f8b1e8c-6c1f-4c5e-9a57-3c1b2f6e9d10",
        shape_requests=(
            m.SatShapeReq(
                request_id="r0",
                shape_definition=m.SatShapeDef(
                    selects=(
                        m.SatShapeDefSelect(
                            tablename="projects",
                            where="this.owner_id = 'u-42' AND this.archived = false",
                            include=(include,),
                        ),
                    )
                ),
            ),
        ),
    )
    return m.SatRpcRequest(method="subscribe", request_id=7, message=m.encode_message(body)), body


# -- the peer --------------------------------------------------------------------------------


def generate_peer(into: Path) -> ModuleType:
    """``satellite_pb2``, generated by grpcio-tools' protoc from proto/satellite.proto."""
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        raise SystemExit(
            "the frames benchmark needs grpcio-tools and protobuf: pip install -e '.[bench]'"
        ) from None
    status = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={into}", str(PROTO)])
    if status != 0:
        raise SystemExit(f"protoc failed ({status}) on {PROTO}")
    spec = importlib.util.spec_from_file_location("satellite_pb2", into / "satellite_pb2.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Case:
    """One frame, and the four timed operations on it."""

    def __init__(
        self,
        label: str,
        ours: m.FrameMessage,
        body: m.ProtoMessage | None,
        pb: ModuleType,
    ) -> None:
        self.label = label
        self.ours = ours
        self.frame = m.encode(ours)
        self.type_id = self.frame[0]
        self.pb_cls: Any = getattr(pb, type(ours).PROTO_NAME)
        self.pb_body_cls: Any = getattr(pb, type(body).PROTO_NAME) if body is not None else None
        self.body = body
        self.pb_msg: Any = self.pb_cls.FromString(self.frame[1:])
        self.pb_body: Any = None
        plan_reads(type(ours), self.pb_cls)
        if body is not None:
            self.pb_body = self.pb_body_cls.FromString(self.pb_msg.message)
            plan_reads(type(body), self.pb_body_cls)
        self.check()

    def check(self) -> None:
        peer = self.peer_encode()
        if peer != self.frame:
            raise AssertionError(f"{self.label}: protobuf encodes other bytes than ours")
        if self.ours_decode() != self.ours:
            raise AssertionError(f"{self.label}: our decoder does not round-trip")
        if self.peer_decode().SerializeToString() != self.frame[1:]:
            raise AssertionError(f"{self.label}: protobuf does not round-trip")
        if self.ours_decode_read() != self.peer_decode_read():
            raise AssertionError(f"{self.label}: the two readers read other values")

    # Ours: the service's entry points.
    def ours_encode(self) -> bytes:
        if self.body is not None:
            message = m.SatRpcRequest(
                method="subscribe", request_id=7, message=m.encode_message(self.body)
            )
            return m.encode(message)
        return m.encode(self.ours)

    def ours_decode(self) -> m.FrameMessage:
        message = m.decode(self.frame)
        if isinstance(message, m.SatRpcRequest):
            m.rpc_request_body(message)
        return message

    # The peer: generated protobuf classes.
    def peer_encode(self) -> bytes:
        if self.pb_body is not None:
            self.pb_msg.message = self.pb_body.SerializeToString()
        body: bytes = self.pb_msg.SerializeToString()
        return bytes((self.type_id,)) + body

    def peer_decode(self) -> Any:
        message = self.pb_cls.FromString(self.frame[1:])
        if self.pb_body_cls is not None:
            self.pb_body_cls.FromString(message.message)
        return message

    # Decoded and then read, as whoever decodes a frame does: every field visited once.
    def ours_decode_read(self) -> int:
        message = m.decode(self.frame)
        n = read_struct(message)
        if isinstance(message, m.SatRpcRequest):
            n += read_struct(m.rpc_request_body(message))
        return n

    def peer_decode_read(self) -> int:
        message = self.pb_cls.FromString(self.frame[1:])
        n = read_pb(message)
        if self.pb_body_cls is not None:
            n += read_pb(self.pb_body_cls.FromString(message.message))
        return n


# How a reader reads a field, the same on both sides (each through its own API).
_VALUE = 0  # a scalar without presence: its value (the default when unset)
_OPTIONAL = 1  # a scalar with presence: its value when set
_MESSAGE = 2  # a message field: its fields, recursively, when set
_VALUES = 3  # a repeated scalar: each item
_MESSAGES = 4  # a repeated message: each item's fields
_ONEOF = 5  # a oneof of message fields: the one set (protobuf: WhichOneof)

#: The fields to read, by class, on each side: (kind, names); names are (our attribute,
#: the .proto's field) for ours, the .proto's field (or the oneof's name) for protobuf.
_PLAN: dict[type, tuple[tuple[int, Any], ...]] = {}


def plan_reads(ours: type[m.ProtoMessage], pb_cls: Any) -> None:
    """The fields of ``ours`` and of the generated ``pb_cls`` to read, from the .proto's
    descriptor, for both classes and every message class they hold."""
    if ours in _PLAN:
        return
    _PLAN[ours] = _PLAN[pb_cls] = ()  # while planning it (messages hold each other)
    desc = pb_cls.DESCRIPTOR
    attr = {f.encode_name: f.name for f in msgspec.structs.fields(ours)}
    hints = {f.name: f.type for f in msgspec.structs.fields(ours)}
    mine: list[tuple[int, Any]] = []
    peer: list[tuple[int, Any]] = []
    groups = [o for o in desc.oneofs if o.fields and all(f.message_type for f in o.fields)]
    in_group = {f.name for o in groups for f in o.fields}
    for group in groups:
        peer.append((_ONEOF, group.name))
    for field in desc.fields:
        if field.message_type is not None:
            sub = field.message_type
            sub_ours = _struct_type(hints[attr[field.name]])
            plan_reads(sub_ours, _pb_class(sub))
            kind = _MESSAGES if field.is_repeated else _MESSAGE
        elif field.is_repeated:
            kind = _VALUES
        else:
            kind = _OPTIONAL if field.has_presence else _VALUE
        mine.append((kind, attr[field.name]))
        if field.name not in in_group:
            peer.append((kind, field.name))
    _PLAN[ours] = tuple(mine)
    _PLAN[pb_cls] = tuple(peer)


def _struct_type(hint: Any) -> type[m.ProtoMessage]:
    """The Struct class in a field's type (``X | None``, ``tuple[X, ...]``)."""
    for arg in getattr(hint, "__args__", (hint,)):
        if isinstance(arg, type) and issubclass(arg, m.ProtoMessage):
            return arg
    raise TypeError(f"no message class in {hint!r}")


def _pb_class(desc: Any) -> Any:
    """The generated class of a message descriptor."""
    from google.protobuf import message_factory  # type: ignore[import-untyped]

    return message_factory.GetMessageClass(desc)


def read_struct(message: Any) -> int:
    """Reads every field of one of our messages, recursively; returns how many values."""
    n = 0
    for kind, name in _PLAN[type(message)]:
        value = getattr(message, name)
        if kind == _VALUE:
            n += 1
        elif kind == _VALUES:
            for _item in value:
                n += 1
        elif kind == _MESSAGES:
            for item in value:
                n += read_struct(item)
        elif value is not None:
            n += read_struct(value) if kind == _MESSAGE else 1
    return n


def read_pb(message: Any) -> int:
    """Reads every field of a protobuf message, recursively; returns how many values (the
    same as :func:`read_struct` of the same message). upb makes a field's Python object when
    it is read; presence is asked with HasField, the member of a oneof with WhichOneof."""
    n = 0
    for kind, name in _PLAN[type(message)]:
        if kind == _ONEOF:
            which = message.WhichOneof(name)
            if which is not None:
                n += read_pb(getattr(message, which))
        elif kind == _VALUE:
            getattr(message, name)
            n += 1
        elif kind == _VALUES:
            for _item in getattr(message, name):
                n += 1
        elif kind == _MESSAGES:
            for item in getattr(message, name):
                n += read_pb(item)
        elif message.HasField(name):
            value = getattr(message, name)
            n += read_pb(value) if kind == _MESSAGE else 1
    return n


def _rate(operation: Callable[[], object], iterations: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(iterations):
        operation()
    return iterations / (time.perf_counter() - start)


#: The slices of a timed run: each side's run is cut into this many slices, the two sides'
#: slices alternating, so that both meet the same load of a shared machine.
SLICES = 10


def _runs(
    sides: dict[str, Callable[[], object]], counts: dict[str, int], repeat: int
) -> dict[str, list[tuple[float, float]]]:
    """``repeat`` timed runs per side: each (wall-clock rate, CPU-time rate), the calls of its
    :data:`SLICES` slices (``counts[side]`` calls each, alternating with the other side's)
    over the time they took."""
    runs: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    names = list(sides)
    for i in range(repeat):
        gc.collect()
        wall = dict.fromkeys(names, 0.0)
        cpu = dict.fromkeys(names, 0.0)
        for s in range(SLICES):
            for side in names if (i + s) % 2 == 0 else names[::-1]:
                operation, n = sides[side], counts[side]
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(n):
                    operation()
                wall[side] += time.perf_counter() - start
                cpu[side] += time.process_time() - start_cpu
        for side in names:
            calls = counts[side] * SLICES
            runs[side].append((calls / wall[side], calls / max(cpu[side], 1e-9)))
    return runs


def _iterations(operation: Callable[[], object], seconds: float) -> int:
    """How many calls take about ``seconds`` (calibrated on a short untimed run)."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            operation()
        spent = time.perf_counter() - start
        if spent > 0.05:
            return max(1, round(n * seconds / spent))
        n *= 4


def _cpu_figure(figure: str, ours: Sequence[float], peer: Sequence[float]) -> str:
    """``figure: ours us, peer us, ratio`` from the CPU-time rates of the runs (best of each)."""
    return (
        f"{figure}: {1e6 / max(ours):.2f} us, {1e6 / max(peer):.2f} us, {max(ours) / max(peer):.2f}"
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(
        argv,
        prog="python -m benches frames",
        description="Satellite frame encode/decode: our Rust codec against protobuf.",
        rows_help="seconds x 10 per timed run (ignored; use --quick or --repeat)",
        quick_rows=1,
        full_rows=1,
    )
    seconds = 0.15 if args.quick else 1.0
    progress = Progress(NAME)
    facts = machine_facts()
    from google.protobuf import __version__ as pb_version  # type: ignore[import-untyped]
    from google.protobuf.internal import api_implementation  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="electric-bench-frames-") as tmp:
        pb = generate_peer(Path(tmp))
        progress.step(
            f"generated satellite_pb2 with protoc; protobuf {pb_version}"
            f" ({api_implementation.Type()} backend)"
        )
        request, body = subscribe()
        cases = [
            Case("SatOpLog, 10 inserts", oplog(10), None, pb),
            Case("SatOpLog, 1,000 inserts", oplog(1000), None, pb),
            Case("SatRelation, 6 columns", relation(), None, pb),
            Case("SatRpcRequest subscribe + SatSubsReq", request, body, pb),
        ]
    rates: dict[tuple[str, str, str], list[float]] = {}
    cpu_rates: dict[tuple[str, str, str], list[float]] = {}
    for case in cases:
        for op in OPERATIONS:
            sides: dict[str, Callable[[], object]] = {
                "ours": getattr(case, f"ours_{op}"),
                "protobuf": getattr(case, f"peer_{op}"),
            }
            counts = {side: _iterations(f, seconds / SLICES) for side, f in sides.items()}
            for side, runs in _runs(sides, counts, args.repeat).items():
                rates[case.label, op, side] = [wall for wall, _ in runs]
                cpu_rates[case.label, op, side] = [cpu for _, cpu in runs]
            progress.step(
                f"{case.label} ({len(case.frame):,} bytes) {op}: ours"
                f" {max(rates[case.label, op, 'ours']):,.0f} msg/s, protobuf"
                f" {max(rates[case.label, op, 'protobuf']):,.0f} msg/s"
            )
    measurements = tuple(
        Measurement(
            figure=f"{OPERATIONS[op]} {case.label}",
            unit="msg/s",
            ours=tuple(rates[case.label, op, "ours"]),
            peer=tuple(rates[case.label, op, "protobuf"]),
            target=TARGET if op != "decode" else 0.0,
        )
        for case in cases
        for op in OPERATIONS
    )
    big = cases[1].frame
    raw = _rate(
        lambda: _native.decode_frame(big), _iterations(lambda: _native.decode_frame(big), seconds)
    )
    facts |= {
        "Peer": f"protobuf {pb_version} ({api_implementation.Type()} backend), classes generated"
        " by grpcio-tools' protoc from proto/satellite.proto",
        "Frame sizes": "; ".join(f"{c.label} {len(c.frame):,} bytes" for c in cases),
        "The dict-form decoder (`_native.decode_frame`, no Structs), SatOpLog of 1,000 inserts": (
            f"{raw:,.0f} msg/s"
        ),
        "CPU time per message, best run (process_time over the same runs; ours, protobuf,"
        " ratio protobuf/ours)": " | ".join(
            _cpu_figure(
                f"{OPERATIONS[op]} {case.label}",
                *(cpu_rates[case.label, op, side] for side in ("ours", "protobuf")),
            )
            for case in cases
            for op in OPERATIONS
        ),
    }
    report = Report(
        name=NAME,
        title="Satellite frame encode/decode: the service's Rust codec against protobuf",
        description=DESCRIPTION.format(
            version=pb_version,
            backend=api_implementation.Type(),
            repeat=args.repeat,
            seconds=seconds,
            slices=SLICES,
        ),
        peer="protobuf",
        measurements=measurements,
        command=command_line([NAME, *argv]),
        settings=f"about {seconds:g} s per timed run, best of {args.repeat} runs per side",
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick; --record to write it)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
