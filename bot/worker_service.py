"""``python -m bot worker``: a model worker process for daemons with ``model.remote`` set.

It loads the model as ``python -m bot run`` does (one in-process :class:`~bot.worker.ModelWorker`,
so concurrent jobs share batches), joins the consumer group of the job stream (:mod:`bot.remote`),
and answers jobs: up to ``worker.queue_size`` at a time, read with XREADGROUP, plus those other
workers took and stopped renewing (XAUTOCLAIM after ``worker.claim_after_seconds``). Each job's
reply is added to its daemon's reply stream, then the job is acknowledged. A first SIGTERM stops
reading, lets the jobs in hand finish within ``shutdown.grace_seconds``, and leaves the rest
unacknowledged for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from bot import collection
from bot.config import Config, ConfigError
from bot.remote import (
    GROUP,
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    JOBS,
    connect,
    encode_hypotheses,
    unreachable,
    where,
)
from bot.slots import Slot
from bot.worker import Generator, ModelWorker

logger = logging.getLogger(__name__)

BLOCK_MS = 1000  # how long one read waits for new jobs


class WorkerService:
    def __init__(
        self, config: Config, url: str, load: Callable[[Config], Generator], *, name: str | None = None
    ):
        self.config = config
        self.url = url
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._load = load
        self._redis: Any = None
        self._local: ModelWorker | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}  # entry id -> the task answering it
        self._room = asyncio.Event()  # set while fewer than queue_size jobs are in hand
        self._stopping = asyncio.Event()  # no more reads
        self._beating = asyncio.Event()  # set: no more heartbeats
        self.answered = 0

    async def serve(self, should_exit: asyncio.Event) -> None:
        """Answer jobs until ``should_exit`` is set, then finish those in hand (bounded)."""
        c = self.config
        self._redis = connect(self.url)
        await self._join()
        self._local = ModelWorker(
            lambda: self._load(c),
            max_batch=c.worker.max_batch,
            max_wait=c.worker.max_wait_ms / 1000,
            queue_size=c.worker.queue_size,
        )
        await self._local.start()
        collection.started()
        beat = asyncio.create_task(self._heartbeat(), name="worker-heartbeat")
        self._room.set()
        logger.info("worker %s takes jobs from %s", self.name, where(self.url))
        reading = asyncio.create_task(self._read(), name="worker-read")
        exit_wait = asyncio.create_task(should_exit.wait())
        try:
            await asyncio.wait({reading, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Stop reading between two reads (a read waits at most BLOCK_MS): a Redis command is
            # never cancelled half-way. Every step below is bounded, so the process always exits.
            self._stopping.set()
            exit_wait.cancel()
            await _ended(reading, BLOCK_MS / 1000 + 2.0)
            if reading.done() and not reading.cancelled() and reading.exception() is not None:
                logger.error("the worker stopped reading jobs: %s", reading.exception())
            if self._jobs:
                logger.info("finishing %d jobs in hand", len(self._jobs))
                await asyncio.wait(set(self._jobs.values()), timeout=c.shutdown.grace_seconds)
            self._beating.set()
            await _ended(beat, HEARTBEAT_SECONDS + 2.0)
            await self._local.stop(timeout=1.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.delete(HEARTBEAT + self.name), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), 2.0)
            logger.info("worker %s stopped after %d jobs", self.name, self.answered)

    async def _join(self) -> None:
        from redis.exceptions import RedisError, ResponseError

        try:
            await self._redis.xgroup_create(JOBS, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: another worker made it
                raise
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise unreachable(self.url, exc) from None

    async def _read(self) -> None:
        claim_ms = int(self.config.worker.claim_after_seconds * 1000)
        delay = 0.5
        while not self._stopping.is_set():
            await _first(self._room.wait(), self._stopping.wait())
            if self._stopping.is_set():
                return
            room = self.config.worker.queue_size - len(self._jobs)
            try:
                _next, claimed, *_ = await self._redis.xautoclaim(
                    JOBS, GROUP, self.name, min_idle_time=claim_ms, start_id="0-0", count=room
                )
                if claimed:
                    logger.warning("took over %d jobs of a worker that stopped answering", len(claimed))
                fresh = []
                if len(claimed) < room:
                    got = await self._redis.xreadgroup(
                        GROUP, self.name, {JOBS: ">"}, count=room - len(claimed), block=BLOCK_MS
                    )
                    fresh = [entry for _stream, entries in got or () for entry in entries]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reading jobs failed (%s); retrying in %.1f s", exc.__class__.__name__, delay)
                await _first(asyncio.sleep(delay), self._stopping.wait())
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            for entry_id, fields in [*claimed, *fresh]:
                if entry_id in self._jobs or not fields:
                    continue  # in hand already, or deleted from the stream
                assert self._local is not None
                slot = self._local.take_slot()  # room was counted: a place is free
                self._jobs[entry_id] = asyncio.create_task(self._answer(entry_id, fields, slot))
            if len(self._jobs) >= self.config.worker.queue_size:
                self._room.clear()

    async def _answer(self, entry_id: str, fields: dict[str, str], slot: Slot) -> None:
        assert self._local is not None
        try:
            async with slot:
                if float(fields.get("expires", "0")) < time.time():
                    reply = None  # the daemon stopped waiting for it
                else:
                    try:
                        hypotheses = await self._local.generate(json.loads(fields["ids"]))
                        reply = {"id": fields["id"], "hypotheses": encode_hypotheses(hypotheses)}
                    except Exception as exc:
                        logger.exception("generation failed for a job")
                        reply = {"id": fields["id"], "error": exc.__class__.__name__}
            await self._settle(entry_id, fields, reply)
        finally:
            self._jobs.pop(entry_id, None)
            self._room.set()

    async def _settle(self, entry_id: str, fields: dict[str, str], reply: dict[str, str] | None) -> None:
        """Add the reply, then acknowledge; until both are done the job stays pending (and is
        claimed by another worker if this one dies)."""
        delay = 0.5
        while True:
            try:
                if reply is not None:
                    await self._redis.xadd(fields["reply"], reply, maxlen=10_000, approximate=True)
                await self._redis.xack(JOBS, GROUP, entry_id)
                await self._redis.xdel(JOBS, entry_id)
                self.answered += reply is not None
                return
            except Exception as exc:
                logger.warning(
                    "could not hand back a reply (%s); retrying in %.1f s", exc.__class__.__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _heartbeat(self) -> None:
        """Say this worker is alive, and renew the jobs in hand so no other worker claims them."""
        while not self._beating.is_set():
            try:
                info = json.dumps({"jobs": len(self._jobs), "answered": self.answered})
                await self._redis.set(HEARTBEAT + self.name, info, ex=int(HEARTBEAT_SECONDS * 3) + 1)
                if self._jobs:
                    await self._redis.xclaim(JOBS, GROUP, self.name, 0, list(self._jobs), justid=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("heartbeat failed: %s", exc.__class__.__name__)
            await _first(asyncio.sleep(HEARTBEAT_SECONDS), self._beating.wait())


async def _first(*steps: Any) -> None:
    """Wait for the first of ``steps`` (coroutines) to finish; cancel the others (none of them is a
    Redis command)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _ended(task: asyncio.Task[None], seconds: float) -> None:
    """Let ``task`` end by itself within ``seconds``, else cancel it (and wait at most 2 s more)."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)


async def run_worker(config: Config) -> None:
    """`python -m bot worker`: serve until SIGTERM or SIGINT (a second one exits at once)."""
    url = config.remote_url()
    if url is None:
        raise ConfigError(
            "`python -m bot worker` answers daemons that send their requests to Redis: set model.remote "
            "to the redis:// URL they share (or export BLENDERD_REDIS_URL)"
        )
    from bot.app import load_model

    should_exit = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if should_exit.is_set():
            os._exit(1)
        logger.info("%s received: finishing the requests in hand (send it again to exit at once)", sig.name)
        should_exit.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await WorkerService(config, url, load_model).serve(should_exit)
