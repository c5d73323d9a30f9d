# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""A large shape's initial sync does not stall the service (issue 4): its rows are added to the
client's graph, framed and written in parts, other tasks running between them, so other clients
keep receiving live changes and the service's Postgres connections keep answering meanwhile."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    client,
    db,
    satellite,
    service,
)
from test_shapes_protocol import big_table, ops, request, select, started, subscribe

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.satellite import session as session_module
from electric_trio.service import Service

ROWS = 200_000


async def test_other_clients_get_live_changes_while_a_large_shape_syncs(
    service: Service, db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # The rows are there before the table is electrified: not in the replication stream.
    await big_table(service, db, ROWS, "'row ' || i")

    order: list[str] = []
    known_b: dict[int, m.SatRelation] = {}
    async with client(service) as a, client(service) as b, await connect(db) as writer:
        await started(service, a, "a")
        await started(service, b, "b")
        assert (await subscribe(b, request(select("small")))).err is None
        while not isinstance(frame := await b.recv(), m.SatSubsDataEnd):
            ops([frame], known_b)

        # The moment the service starts streaming a's rows (all read by then): added to its
        # graph, framed and written part by part.
        adding = trio.Event()
        stream_data = session_module.stream_data

        class Graph:
            """a's graph, noting each part of rows added."""

            def __init__(self, graph: Any) -> None:
                self.graph = graph

            def add_rows_framed(self, *args: Any) -> Any:
                order.append("a's rows added")
                return self.graph.add_rows_framed(*args)

            def finish_framed(self) -> Any:
                return self.graph.finish_framed()

        async def observed(graph: Any, *args: Any) -> int:
            adding.set()
            return await stream_data(Graph(graph), *args)

        monkeypatch.setattr(session_module, "stream_data", observed)

        async def b_gets_a_change() -> None:
            await adding.wait()
            await writer.execute("INSERT INTO small VALUES (1, 'live')")
            got: list[tuple[str, ...]] = []
            while not got:
                got = ops([await b.recv()], known_b)
            assert got == [("insert", "small", "1")]
            order.append("b got its change")

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(b_gets_a_change)
                assert (await subscribe(a, request(select("big")))).err is None
                known_a: dict[int, m.SatRelation] = {}
                rows = 0
                while not isinstance(frame := await a.recv(), m.SatSubsDataEnd):
                    if isinstance(frame, m.SatSubsDataBegin):
                        order.append("a's data began")
                    rows += len(ops([frame], known_a))
                order.append("a's data ended")
    assert rows == ROWS
    # b's change went through Postgres, the replication stream and b's socket while the service
    # was still adding a's rows, framing and writing them (it used to hold its event loop for
    # all of them: nobody else was served meanwhile).
    served = order.index("b got its change")
    assert "a's rows added" in order[served:]
    assert order.index("a's data began") < order.index("a's data ended")
    assert "did not answer in time" not in caplog.text
