"""The model worker: one thread owns the model, builds it, and generates for batches of requests.

Keras keeps its dtype policy per thread and torch its grad mode per thread, so the model is
built and run only in this thread. The event loop submits requests and awaits futures; it never
blocks on the model. Requests that arrive together (from different conversations) are generated
in one padded batch of up to ``max_batch``; the worker waits up to ``max_wait`` for a batch to
fill only while more requests holding a place (a :class:`Slot`) are on their way.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from bot.context import ContextModel, ContextTokenizer
from bot.slots import Admission, Busy, Slot, WorkerStats, WorkerStopped
from model import Hypothesis
from model.heap import Trimmer

logger = logging.getLogger(__name__)


_THREADS: set[threading.Thread] = set()  # model threads still running, for the process's exit


def busy_threads() -> bool:
    """Whether a model thread is still running (a generation past the shutdown budget)."""
    return any(t.is_alive() for t in _THREADS)


__all__ = ["Busy", "Generator", "ModelWorker", "Worker", "WorkerStopped", "busy_threads"]


class Generator(Protocol):
    """What the worker needs of a model; :class:`model.Blenderbot` is the product's one."""

    @property
    def tokenizer(self) -> ContextTokenizer: ...

    @property
    def max_positions(self) -> int: ...

    def generate(self, inputs: Sequence[Sequence[int]]) -> list[list[Hypothesis]]:
        """Hypotheses per input, best first, searched as the model was configured to at load."""


@dataclass
class _Request:
    ids: list[int]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Hypothesis]]


def _deliver(future: asyncio.Future[list[Hypothesis]], result: list[Hypothesis] | BaseException) -> None:
    if future.done():
        return  # the caller timed out or was cancelled
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Worker(Protocol):
    """What the core needs of the model stage: places (bot.slots.Admission), generation, a
    lifecycle, and the model's tokenizer for building contexts. :class:`ModelWorker` runs the model
    in this process; :class:`bot.remote.RemoteWorker` sends the requests to workers over Redis."""

    @property
    def ready(self) -> bool: ...

    @property
    def depth(self) -> int: ...

    @property
    def model(self) -> ContextModel: ...

    @property
    def stats(self) -> WorkerStats: ...

    def take_slot(self) -> Slot: ...

    async def wait_for_slot(self) -> Slot: ...

    async def generate(self, ids: list[int]) -> list[Hypothesis]: ...

    async def start(self) -> None: ...

    async def stop(self, timeout: float | None = None) -> None: ...


class ModelWorker(Admission):
    def __init__(
        self,
        load: Callable[[], Generator],
        *,
        max_batch: int = 8,
        max_wait: float = 0.015,
        queue_size: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
        trimmer: Trimmer | None = None,
    ) -> None:
        """``trimmer`` gives the heap's freed memory back after batches (:class:`model.heap.Trimmer`,
        the default one when None): without it the resident size of a busy daemon grew by 0.5-0.9
        MiB per message with the 400M model, its live memory flat (docs/benchmarks.md, 2026-12-07)."""
        self._load = load
        self.max_batch = max_batch
        self.max_wait = max_wait
        super().__init__(queue_size)
        self._on_batch = on_batch
        self._trimmer = trimmer or Trimmer()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._finished: asyncio.Future[None] | None = None
        self._model: Generator | None = None
        self.stats = WorkerStats()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and wait until it has built the model (raises what loading raised)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._finished = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name="model-worker", daemon=True
        )
        _THREADS.add(self._thread)
        self._thread.start()
        await ready
        self._accepting = True

    async def stop(self, timeout: float | None = None) -> None:
        """Take no new requests, let queued ones finish within ``timeout``, then stop waiting.

        A generation cannot be interrupted: a thread still busy after ``timeout`` is left to the
        process's exit (it is a daemon thread and touches nothing but the model).
        """
        self._close_admission()
        if self._thread is None:
            return
        self._queue.put(None)
        assert self._finished is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout)
        except TimeoutError:
            logger.warning(
                "the model is still generating at the end of the shutdown budget; not waiting for it"
            )
        else:
            self._thread.join()
            _THREADS.discard(self._thread)
        self._thread = None

    @property
    def ready(self) -> bool:
        return self._accepting and self._model is not None

    @property
    def model(self) -> Generator:
        if self._model is None:
            raise RuntimeError("the model worker has not started")
        return self._model

    async def generate(self, ids: list[int]) -> list[Hypothesis]:
        """Generate for one context (holding a :class:`Slot`); hypotheses best first."""
        loop = asyncio.get_running_loop()
        request = _Request(ids=ids, loop=loop, future=loop.create_future())
        self._queue.put(request)
        return await request.future

    # -- the thread -------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        finished = self._finished
        assert finished is not None
        try:
            self._serve(loop, ready)
        finally:
            with suppress(RuntimeError):  # the loop is gone when a shutdown stopped waiting for us
                loop.call_soon_threadsafe(_set_ready, finished, None)

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            self._model = self._load()
        except BaseException as exc:  # reported to start(), which raises it in the loop
            loop.call_soon_threadsafe(_set_ready, ready, exc)
            return
        loop.call_soon_threadsafe(_set_ready, ready, None)
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._generate(batch)
            if stop:
                return

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                # Wait only while more requests holding a place are still being prepared.
                if remaining <= 0 or self._places.taken <= len(batch):
                    break
                try:
                    request = self._queue.get(timeout=min(remaining, 0.002))
                except queue.Empty:
                    continue
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    def _generate(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]
        if not live:
            return
        assert self._model is not None
        started = time.perf_counter()
        try:
            results: list[list[Hypothesis]] | None = self._model.generate([r.ids for r in live])
            error: BaseException | None = None
        except Exception as exc:
            logger.exception("generation failed for a batch of %d", len(live))
            results, error = None, exc
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.requests += len(live)
        self.stats.batch_sizes.append(len(live))
        if self._on_batch is not None:
            self._on_batch(len(live), elapsed)
        for i, request in enumerate(live):
            outcome: list[Hypothesis] | BaseException = results[i] if results is not None else error  # type: ignore[assignment]
            with suppress(RuntimeError):  # the loop closed while this batch was generating
                request.loop.call_soon_threadsafe(_deliver, request.future, outcome)
        self._trimmer.after(elapsed, idle=self._queue.empty())


def _set_ready(ready: asyncio.Future[None], error: BaseException | None) -> None:
    if ready.done():
        return
    if error is None:
        ready.set_result(None)
    else:
        ready.set_exception(error)
