"""Wiring: open the database, start the model worker, and build the core, for every command."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.config import Config
from bot.context import ContextBuilder, ContextModel
from bot.core import ChatCore
from bot.metrics import Metrics
from bot.pipeline import Pipeline
from bot.worker import Generator, ModelWorker, Worker
from memory import MemoryStore
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


class ModelImports:
    """Import torch, then Keras (2-5 s of a cold start), in a thread while the rest starts.

    Only this thread imports them meanwhile: two threads importing torch's package graph at once
    can see each other's half-initialised modules (torch: "cannot import name 'set_module' from
    partially initialized module 'torch.utils'"), so the model's loader first waits for
    :meth:`wait_for_torch`. It then packs int8 kernels (torch only) while Keras is still being
    imported here; its own import of the model module waits for this one (same module). Never
    started while another thread imports torch or scikit-learn (the safety classifier's loader).
    An import that fails here fails again in the loader, which reports it."""

    def __init__(self) -> None:
        self._torch = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-imports", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            importlib.import_module("model.int8")  # torch
            self._torch.set()
            torch_done = time.perf_counter()
            importlib.import_module("model.blenderbot")  # keras
            logger.debug(
                "imported torch in %.2f s, then keras in %.2f s",
                torch_done - started,
                time.perf_counter() - torch_done,
            )
        except Exception:  # the loader's import raises it again, with the one-line report
            logger.debug("prefetching the model's imports failed; the loader will report it", exc_info=True)
        finally:
            self._torch.set()

    def wait_for_torch(self) -> None:
        self._torch.wait()


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
        self._imports: ModelImports | None = None

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
        prefetch = c.remote_url() is None
        if prefetch and not c.safety.classifier.enabled:  # the classifier's loader imports torch
            self._imports = ModelImports()
        try:
            Path(c.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise OSError(f"data_dir {c.data_dir} cannot be created: {exc.strerror}") from None
        self._safety = SafetyChecker.from_config(c.safety, Path(c.data_dir))
        await self._safety.start()  # fails closed, before anything else is opened
        if prefetch and c.safety.classifier.enabled:  # its imports are done now
            self._imports = ModelImports()
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
        imports = self._imports

        def load() -> Generator:
            if imports is not None:
                imports.wait_for_torch()
            return self._load(c)

        return ModelWorker(
            load,
            max_batch=c.worker.max_batch,
            max_wait=c.worker.max_wait_ms / 1000.0,
            queue_size=c.worker.queue_size,
            on_batch=self.metrics.observe_batch,
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
