"""The worker's places: taken at once or refused ("busy"), waited for in order, never polled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import model
from bot.worker import Busy, ModelWorker, WorkerStopped


@pytest.fixture
async def worker(blenderbot_dir: Path) -> AsyncIterator[ModelWorker]:
    w = ModelWorker(lambda: model.load(blenderbot_dir, device="cpu"), queue_size=2)
    await w.start()
    yield w
    await w.stop(timeout=10)


async def test_a_full_queue_is_busy_at_once_and_a_place_comes_back(worker: ModelWorker) -> None:
    first, second = worker.take_slot(), worker.take_slot()
    assert worker.depth == 2
    with pytest.raises(Busy):
        worker.take_slot()
    async with first:
        pass
    first.release()  # twice is harmless
    assert worker.depth == 1
    async with worker.take_slot():
        assert worker.depth == 2
    second.release()
    assert worker.depth == 0


async def test_waiters_get_places_in_order_as_they_are_given_back(worker: ModelWorker) -> None:
    held = [worker.take_slot(), worker.take_slot()]
    got: list[int] = []

    async def wait(n: int) -> None:
        async with await worker.wait_for_slot():
            got.append(n)
            await asyncio.sleep(0)

    waiters = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert got == [] and worker.depth == 2
    with pytest.raises(Busy):
        worker.take_slot()  # a live message does not jump the waiting ones
    held.pop().release()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert got == [0, 1, 2]
    held.pop().release()
    assert worker.depth == 0


async def test_a_cancelled_waiter_gives_its_turn_away(worker: ModelWorker) -> None:
    held = [worker.take_slot(), worker.take_slot()]
    gone = asyncio.create_task(worker.wait_for_slot())
    stays = asyncio.create_task(worker.wait_for_slot())
    await asyncio.sleep(0)
    gone.cancel()
    held.pop().release()
    slot = await asyncio.wait_for(stays, 5)
    assert worker.depth == 2
    slot.release()
    held.pop().release()
    assert worker.depth == 0


async def test_stopping_fails_the_waiters(worker: ModelWorker) -> None:
    held = [worker.take_slot(), worker.take_slot()]
    waiter = asyncio.create_task(worker.wait_for_slot())
    await asyncio.sleep(0)
    await worker.stop(timeout=10)
    with pytest.raises(WorkerStopped):
        await waiter
    with pytest.raises(WorkerStopped):
        worker.take_slot()
    for slot in held:
        slot.release()
