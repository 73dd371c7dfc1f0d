"""Model workers in other processes, over Redis Streams (``model.remote``).

The daemon's :class:`RemoteWorker` adds each generation request to one stream; the
``python -m bot worker`` processes (:mod:`bot.worker_service`) read it as one consumer group, so
each job goes to one worker, which generates batches of them as the in-process worker does.
Keys (every value a string)::

    blenderd:jobs               stream: id, ids (JSON token ids), reply (a reply stream), expires
    blenderd:replies:<daemon>   stream, one per daemon: id, and hypotheses (JSON) or error
    blenderd:workers:<name>     a live worker's heartbeat (expires unless renewed)

A worker adds the reply, then acknowledges the job (XACK). A job held by a worker that stopped
renewing it (killed, its machine gone) is claimed by another after ``worker.claim_after_seconds``
(XAUTOCLAIM), so every job is answered at least once; the daemon keeps the first answer for each
id, so each person gets one. A job past its ``expires`` (the daemon gave up waiting) is
acknowledged without generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.context import ContextModel
from bot.slots import Admission, WorkerStats, WorkerUnavailable

if TYPE_CHECKING:  # not at import: `check-config` reads this module without importing torch
    from model.settings import Hypothesis

logger = logging.getLogger(__name__)

JOBS = "blenderd:jobs"
GROUP = "workers"
REPLIES = "blenderd:replies:"
HEARTBEAT = "blenderd:workers:"
HEARTBEAT_SECONDS = 2.0  # a worker renews its heartbeat this often; it lasts three times as long
REPLY_KEEP_SECONDS = 3600  # a reply stream whose daemon is gone disappears after this long
JOBS_MAX = 100_000  # the job stream is trimmed to about this many entries


class RemoteError(Exception):
    """The Redis of the remote workers cannot be used; the message is one line with the fix."""


def where(url: str) -> str:
    """A Redis URL as it may appear in a message: host, port and database, never a password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def unreachable(url: str, exc: BaseException) -> RemoteError:
    return RemoteError(
        f"the model workers' Redis at {where(url)} cannot be reached ({_reason(exc)}): start Redis "
        "there, or set model.remote to its redis:// URL (without it the model runs in the daemon)"
    )


def connect(url: str) -> Any:
    """A redis.asyncio client for ``url`` (strings in and out)."""
    import redis.asyncio as redis

    return redis.from_url(url, decode_responses=True, health_check_interval=30)


def job_fields(job_id: str, ids: Sequence[int], reply: str, expires: float) -> dict[str, str]:
    return {"id": job_id, "ids": json.dumps(list(ids)), "reply": reply, "expires": f"{expires:.3f}"}


def encode_hypotheses(hypotheses: Sequence[Hypothesis]) -> str:
    return json.dumps([[list(h.tokens), h.text, h.score] for h in hypotheses])


def decode_hypotheses(raw: str) -> list[Hypothesis]:
    from model.settings import Hypothesis

    return [
        Hypothesis(tokens=tuple(tokens), text=text, score=float(score))
        for tokens, text, score in json.loads(raw)
    ]


class RemoteWorker(Admission):
    """The daemon's side: places as the in-process worker has them (``busy`` when this daemon has
    ``queue_size`` requests in flight), each request a job on the stream, each answer read from
    this daemon's reply stream. ``ready`` while Redis answers and at least one worker is alive."""

    def __init__(
        self,
        url: str,
        load_tokenizer: Callable[[], ContextModel],
        *,
        queue_size: int = 64,
        request_seconds: float = 60.0,
    ) -> None:
        super().__init__(queue_size)
        self.url = url
        self._load_tokenizer = load_tokenizer
        self._request_seconds = request_seconds
        self._redis: Any = None
        self._model: ContextModel | None = None
        self._reply_key = REPLIES + uuid.uuid4().hex
        self._waiting: dict[str, asyncio.Future[list[Hypothesis]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.workers = 0  # live workers, as last seen
        self.stats = WorkerStats()  # requests answered (batches are the workers' business)
        self._reachable = False
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect to Redis and load the tokenizer; raises RemoteError when Redis cannot be reached."""
        from redis.exceptions import RedisError

        self._redis = connect(self.url)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise unreachable(self.url, exc) from None
        self._reachable = True
        self._model = await asyncio.to_thread(self._load_tokenizer)
        await self._count_workers()
        self._tasks = [
            asyncio.create_task(self._read_replies(), name="remote-replies"),
            asyncio.create_task(self._watch_workers(), name="remote-workers"),
        ]
        self._accepting = True
        logger.info(
            "generation goes to the model workers at %s (%d alive now)", where(self.url), self.workers
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Take no new requests and let those in flight be answered within ``timeout``."""
        self._close_admission()
        if self._waiting:
            await asyncio.wait(set(self._waiting.values()), timeout=timeout)
        # The reader stops between two reads (each waits at most a second): a Redis command is
        # never cancelled half-way. Every step is bounded.
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=3.0)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.delete(self._reply_key), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), 2.0)
            self._redis = None

    @property
    def ready(self) -> bool:
        return self._accepting and self._reachable and self.workers > 0

    @property
    def model(self) -> ContextModel:
        if self._model is None:
            raise RuntimeError("the remote worker has not started")
        return self._model

    async def generate(self, ids: list[int]) -> list[Hypothesis]:
        """Send one context to the workers (holding a place) and wait for its hypotheses."""
        from redis.exceptions import RedisError

        job_id = uuid.uuid4().hex
        answer: asyncio.Future[list[Hypothesis]] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = answer
        try:
            fields = job_fields(job_id, ids, self._reply_key, time.time() + self._request_seconds)
            try:
                await self._redis.xadd(JOBS, fields, maxlen=JOBS_MAX, approximate=True)
            except (RedisError, OSError) as exc:
                raise WorkerUnavailable(
                    f"the model workers' Redis at {where(self.url)}: {_reason(exc)}"
                ) from None
            return await answer
        finally:
            self._waiting.pop(job_id, None)

    async def _read_replies(self) -> None:
        last, delay = "0-0", 0.5
        while not self._stopping.is_set():
            try:
                got = await self._redis.xread({self._reply_key: last}, count=256, block=1000)
                await self._redis.expire(self._reply_key, REPLY_KEEP_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._reachable = False
                logger.warning(
                    "the model workers' Redis is unavailable (%s); retrying in %.1f s", _reason(exc), delay
                )
                await self._pause(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._reachable, delay = True, 0.5
            for _stream, entries in got or ():
                for entry_id, fields in entries:
                    last = entry_id
                    self._answer(fields)
                if entries:
                    with contextlib.suppress(Exception):
                        await self._redis.xtrim(self._reply_key, minid=last)

    def _answer(self, fields: Mapping[str, str]) -> None:
        answer = self._waiting.get(fields.get("id", ""))
        if answer is None or answer.done():
            return  # the daemon stopped waiting (a timeout), or a second answer after a claim
        if "error" in fields:
            answer.set_exception(WorkerUnavailable(f"the model worker failed: {fields['error']}"))
        else:
            answer.set_result(decode_hypotheses(fields["hypotheses"]))
            self.stats.requests += 1

    async def _count_workers(self) -> None:
        found = 0
        async for _key in self._redis.scan_iter(match=HEARTBEAT + "*", count=100):
            found += 1
        if found == 0 and self.workers > 0:
            logger.warning(
                "no model worker is alive: messages wait until one starts (`python -m bot worker`)"
            )
        self.workers = found

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the worker stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _watch_workers(self) -> None:
        while not self._stopping.is_set():
            await self._pause(HEARTBEAT_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await self._count_workers()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._reachable = False


def _reason(exc: BaseException) -> str:
    """``Connection refused`` rather than redis-py's "Error 111 connecting to ...": the OS's words
    for the innermost OSError, else the error's first line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):  # a name that does not resolve
            return f"{exc.__class__.__name__}: {cause.strerror}"
        if isinstance(cause, OSError) and cause.errno:
            return f"{exc.__class__.__name__}: {os.strerror(cause.errno)}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__
