"""Places at the model worker: taken at once or refused ("busy"), or waited for in order.

A place is held while a request is prepared, generated and answered; the worker waits for a
batch to fill only while more places are taken than requests have arrived.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class Slot:
    """One place in the worker's queue, held while a request is prepared, generated and answered.

    ``async with slot:`` gives the place back when the block ends, however it ends; giving it back
    twice is harmless. Places are handed to waiters (:meth:`ModelWorker.wait_for_slot`) in order.
    """

    def __init__(self, places: Places) -> None:
        self._places: Places | None = places

    def release(self) -> None:
        if self._places is not None:
            self._places.give_back()
            self._places = None

    async def __aenter__(self) -> Slot:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.release()


class Places:
    """A counted set of places: taken at once (or refused), or waited for in order, on the event
    loop; :attr:`taken` may be read from the model thread (under a lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._taken = 0
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def taken(self) -> int:
        with self._lock:
            return self._taken

    def take_now(self) -> bool:
        with self._lock:
            if self._taken >= self.size or self._waiters:
                return False
            self._taken += 1
            return True

    async def take(self) -> None:
        if self.take_now():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # give_back hands its place to the first waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give_back()  # handed over just as this waiter was cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes on: taken stays the same
                return
        with self._lock:
            self._taken = max(0, self._taken - 1)

    def fail_waiters(self, error: BaseException) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
