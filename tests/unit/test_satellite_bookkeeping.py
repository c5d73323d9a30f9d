"""The combining of many clients' state writes (and reads) into few statements."""

from __future__ import annotations

import trio

from electric_trio.satellite import _bookkeeping as bk


def _w(kind: bk.Kind, client: str) -> bk.Write:
    return (kind, client, [(client,)])


def test_a_clients_writes_go_in_successive_statements() -> None:
    writes = [
        _w(bk.FORGET_STORED, "a"),
        _w(bk.SUBSCRIPTION, "b"),
        _w(bk.SUBSCRIPTION, "a"),
        _w(bk.CHECKPOINT, "b"),
        _w(bk.CHECKPOINT, "c"),
        _w(bk.CHECKPOINT, "a"),
    ]
    assert bk.rounds(writes) == [[0, 1, 4], [2, 3], [5]]


def test_a_checkpoint_replaced_by_a_later_one_of_the_client_is_not_written() -> None:
    writes = [
        _w(bk.CHECKPOINT, "a"),  # 0: replaced by 2
        _w(bk.CHECKPOINT, "b"),  # 1: kept (b's only)
        _w(bk.CHECKPOINT, "a"),  # 2: replaced by 4 (a forget comes after 4, not before)
        _w(bk.SUBSCRIPTION, "a"),
        _w(bk.CHECKPOINT, "a"),  # 4: kept: a forget of a's state follows
        _w(bk.FORGET_STORED, "a"),
        _w(bk.CHECKPOINT, "a"),  # 6: kept
    ]
    assert bk.superseded(writes) == {0: 4, 2: 4}


def test_one_statement_per_round_with_a_part_per_kind() -> None:
    sql, params = bk.statement(
        [
            (bk.SUBSCRIPTION, "a", [("a", "s", "1", b"r")]),
            (bk.FORGET_SUBSCRIPTIONS, "b", [("b", "s1"), ("b", "s2")]),
            (bk.SUBSCRIPTION, "c", [("c", "t", "2", b"q")]),
        ]
    )
    assert sql.startswith("WITH subscription AS (INSERT")
    assert "forget_subscriptions AS (DELETE" in sql
    assert sql.endswith(" SELECT 1")
    assert params == [["a", "c"], ["s", "t"], ["1", "2"], [b"r", b"q"], ["b", "b"], ["s1", "s2"]]


async def test_calls_made_while_a_batch_runs_form_the_next_batch() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await trio.sleep(0.1)
        return [i * 10 if i != 3 else ValueError("three") for i in items]

    combine: bk.Combiner[int, int] = bk.Combiner(run)
    results: dict[int, int | str] = {}

    async def call(i: int) -> None:
        try:
            results[i] = await combine(i)
        except ValueError as e:
            results[i] = str(e)

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(call, i)
            await trio.sleep(0.01)
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert results == {0: 0, 1: 10, 2: 20, 3: "three", 4: 40, 5: 50}


async def test_a_read_cancelled_while_it_runs_a_batch_leaves_the_others_to_the_next() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await trio.sleep(0.2)
        return [i * 10 for i in items]

    combine: bk.Combiner[int, int] = bk.Combiner(run)
    results: dict[int, int] = {}

    async def call(i: int, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            results[i] = await combine(i)

    leader = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 0)
        await trio.sleep(0.01)
        nursery.start_soon(call, 1, leader)
        await trio.sleep(0.01)
        nursery.start_soon(call, 2)
        with trio.move_on_after(0.05):
            await combine(9)  # waits behind [0]: cancelled, dropped
        await trio.sleep(0.25)  # 1 runs the batch [1, 2]
        leader.cancel()
    assert batches == [[0], [1, 2], [2]]
    assert results == {0: 0, 2: 20}


async def test_a_write_is_not_interrupted() -> None:
    done: list[int] = []

    async def run(items: list[int]) -> list[BaseException | None]:
        await trio.sleep(0.2)
        done.extend(items)
        return [None] * len(items)

    combine: bk.Combiner[int, None] = bk.Combiner(run, shield=True)
    with trio.move_on_after(0.05):
        await combine(1)
    assert done == [1]


async def test_batches_have_a_most_size() -> None:
    n = 2 * bk.MAX_BATCH
    sizes: list[int] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        await trio.sleep(0.01)
        return list(items)

    combine: bk.Combiner[int, int] = bk.Combiner(run)
    async with trio.open_nursery() as nursery:
        for i in range(n + 1):
            nursery.start_soon(combine, i)
    assert sum(sizes) == n + 1
    assert max(sizes) <= bk.MAX_BATCH


async def _cancelled_as_its_turn_comes() -> list[int]:
    release = trio.Event()

    async def run(items: list[int]) -> list[int | BaseException]:
        if items == [0]:
            await release.wait()
        return list(items)

    combine: bk.Combiner[int, int] = bk.Combiner(run)
    results: list[int] = []

    async def call(i: int, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            results.append(await combine(i))

    second = trio.CancelScope()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 0)
            await trio.sleep(0.01)
            nursery.start_soon(call, 1, second)
            await trio.sleep(0.01)
            nursery.start_soon(call, 2)
            await trio.sleep(0.01)
            release.set()  # 0's batch ends: the turn goes to 1...
            second.cancel()  # ... as 1 is cancelled
    return sorted(results)


async def test_a_reader_cancelled_as_its_turn_comes_passes_the_turn_on() -> None:
    for _ in range(20):  # trio runs the two woken tasks in either order
        assert await _cancelled_as_its_turn_comes() == [0, 2]
