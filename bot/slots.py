"""Places at the model worker: taken at once or refused ("busy"), or waited for in order.

A place is held while a request is prepared, generated and answered; the worker waits for a
batch to fill only while more places are taken than requests have arrived.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field


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


@dataclass
class WorkerStats:
    batches: int = 0
    requests: int = 0
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))  # the most recent


class Busy(Exception):
    """The request queue is full; the caller should answer "busy" at once."""


class WorkerStopped(Exception):
    """The worker is stopping or stopped and takes no new requests."""


class WorkerUnavailable(Exception):
    """A remote worker could not be asked or failed (Redis down): one line, no traceback needed."""


class Admission:
    """The places of a model worker (in this process or remote): a request holds one from before it
    is prepared until it is answered, so at most ``size`` are in flight."""

    def __init__(self, size: int) -> None:
        self.queue_size = size
        self._places = Places(size)
        self._accepting = False

    @property
    def depth(self) -> int:
        """Places taken and not given back (requests being prepared, queued or generating)."""
        return self._places.taken

    def take_slot(self) -> Slot:
        """A place in the queue now, before preparing a request; raises Busy when the queue is
        full (answer "busy" at once) and WorkerStopped when the worker takes no more requests."""
        if not self._accepting:
            raise WorkerStopped("the model worker is not accepting requests")
        if not self._places.take_now():
            raise Busy(f"{self.depth} requests are waiting")
        return Slot(self._places)

    async def wait_for_slot(self) -> Slot:
        """A place in the queue, waiting in order for one to be given back (recovered messages:
        they wait rather than being told "busy"); raises WorkerStopped when the worker stops."""
        if not self._accepting:
            raise WorkerStopped("the model worker is not accepting requests")
        await self._places.take()
        return Slot(self._places)

    def _close_admission(self) -> None:
        """Take no new requests; those waiting for a place are told the worker stopped."""
        self._accepting = False
        self._places.fail_waiters(WorkerStopped("the model worker is stopping"))
