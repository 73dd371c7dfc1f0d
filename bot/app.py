"""Wiring: open the database, start the model worker, and build the core, for every command."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bot import collection
from bot.config import Config
from bot.context import ContextBuilder, ContextModel
from bot.core import ChatCore
from bot.metrics import Metrics
from bot.pipeline import Pipeline
from bot.worker import Generator, ModelWorker, Worker
from memory import MemoryStore
from model.heap import Trimmer
from safety import SafetyChecker

logger = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 3600.0


def load_model(config: Config) -> Generator:
    """Resolve (download if needed) and build the model. Runs in the worker thread."""
    import model

    m = config.model
    return model.load(
        m.source,
        device=m.device,
        dtype=m.dtype,
        data_dir=config.data_dir,
        generation=m.generation.overrides(),
        candidates=m.candidates,
        int8_cache=Path(config.data_dir) / "int8",
    )


def load_tokenizer(config: Config) -> ContextModel:
    """The checkpoint's tokenizer only (a daemon with remote workers). Runs in a thread."""
    import model

    return model.load_tokenizer(config.model.source, data_dir=config.data_dir)


class App:
    """The running parts of blenderd, started and stopped in order."""

    def __init__(self, config: Config, *, load: Callable[[Config], Generator] = load_model) -> None:
        """``load`` builds the model in the worker thread (tests pass one that wraps the real one)."""
        self.config = config
        self._load = load
        self.metrics = Metrics()
        self._memory: MemoryStore | None = None
        self._worker: Worker | None = None
        self._core: ChatCore | None = None
        self._retention: asyncio.Task[None] | None = None
        self._safety: SafetyChecker | None = None

    @property
    def memory(self) -> MemoryStore:
        if self._memory is None:
            raise RuntimeError("the app has not started")
        return self._memory

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            raise RuntimeError("the app has not started")
        return self._worker

    @property
    def core(self) -> ChatCore:
        if self._core is None:
            raise RuntimeError("the app has not started")
        return self._core

    async def start(self) -> None:
        c = self.config
        try:
            Path(c.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise OSError(f"data_dir {c.data_dir} cannot be created: {exc.strerror}") from None
        self._safety = SafetyChecker.from_config(c.safety, Path(c.data_dir))
        await self._safety.start()  # fails closed, before anything else is opened
        try:
            self._memory = await MemoryStore.open(c.database_url())
        except BaseException:
            await self._safety.stop()
            raise
        try:
            await self._memory.locks.hold_instance(self._memory.owner)
            self._worker = self._make_worker()
            await self._worker.start()
        except BaseException:
            await self._memory.close()
            await self._safety.stop()
            raise
        contexts = ContextBuilder.for_model(self._worker.model, c.persona, c.memory)
        pipeline = Pipeline(
            c, self._memory, self._worker, contexts, metrics=self.metrics, safety=self._safety
        )
        self._core = ChatCore(pipeline)
        worker = self._worker
        self.metrics.queue_depth.set_function(lambda: worker.depth)
        if c.database.retention_days is not None:
            self._retention = asyncio.create_task(self._retain(c.database.retention_days))
        collection.started()

    def _make_worker(self) -> Worker:
        """The model in this process, or (``model.remote``) the model workers over Redis."""
        c = self.config
        remote = c.remote_url()
        if remote is not None:
            from bot.remote import RemoteWorker

            return RemoteWorker(
                remote,
                lambda: load_tokenizer(c),
                queue_size=c.worker.queue_size,
                request_seconds=c.model.timeout_seconds,
            )
        # The model's imports (torch, then Keras: most of a cold start) start here, in the worker
        # thread, once safety and the database are open: beside them, in a thread started
        # earlier, the first start took 5.57 s to its first reply instead of 4.99 (medians of 6,
        # 2-core AMD EPYC; every later start 3.78 against 3.98 s): two threads running Python
        # code share one GIL, and the database's first migration is Python code.
        return ModelWorker(
            lambda: self._load(c),
            max_batch=c.worker.max_batch,
            max_wait=c.worker.max_wait_ms / 1000.0,
            queue_size=c.worker.queue_size,
            on_batch=self.metrics.observe_batch,
            trimmer=Trimmer(on_trim=self.metrics.observe_trim),
        )

    async def _retain(self, days: int) -> None:
        assert self._memory is not None
        while True:
            deleted = await self._memory.purge_older_than(days)
            if deleted:
                logger.info("retention: deleted %d turns older than %d days", deleted, days)
            await asyncio.sleep(RETENTION_EVERY_SECONDS)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the worker (waiting up to ``timeout`` for a generation), the database and safety."""
        if self._retention is not None:
            self._retention.cancel()
        if self._worker is not None:
            await self._worker.stop(timeout)
        if self._memory is not None:
            await self._memory.close()
        if self._safety is not None:
            await self._safety.stop()
