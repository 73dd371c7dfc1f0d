"""`python -m bot run`: start the app and the adapters, serve until a signal, stop within one budget.

Like uvicorn's server: the first SIGTERM/SIGINT sets a flag; shutdown stops taking messages, lets
replies in flight finish, then cancels what is left, all within ``shutdown.grace_seconds``; a
second signal exits at once.

A platform that cannot be reached at start (no network, DNS, a proxy down) is retried with
backoff, one log line per attempt, while /healthz answers 503; a platform that rejects its token
stops the daemon with one line (exit 2). Errors::

    PlatformError
    ├── PlatformRejected     the platform refused the credentials (HTTP 401): not retried
    └── PlatformUnreachable  no connection to the platform: retried with backoff
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from aiohttp.web import RouteDef

from bot.app import App
from bot.config import ConfigError
from bot.core import ChatCore, Deliver
from bot.httpserver import HttpServer
from bot.messages import Incoming

logger = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 60.0
UNWIND_SECONDS = 2.0  # what a cancelled task gets to unwind, on top of the grace period


class PlatformError(Exception):
    """A platform adapter could not connect; the message is one line with the cause and the fix."""


class PlatformRejected(PlatformError):
    """The platform refused the token: retrying cannot help."""


class PlatformUnreachable(PlatformError):
    """The platform could not be reached: retried with backoff."""


class Adapter(Protocol):
    """A platform's connection, in message terms: it produces :class:`~bot.messages.Incoming`
    messages for the core and knows how to answer one."""

    name: str

    @property
    def connected(self) -> bool: ...

    @property
    def username(self) -> str | None:
        """The bot's name where commands may name it (``/help@name``), once connected."""

    async def start(self) -> None:
        """Connect (raises PlatformRejected or PlatformUnreachable, having cleaned up after itself)."""

    async def start_intake(self) -> None:
        """Start taking messages (after recovery has taken its place in each conversation's line)."""

    def deliver_to(self, message: Incoming) -> Deliver:
        """How to send the reply to ``message`` (live, or recovered after a crash)."""

    async def stop_intake(self) -> None:
        """Stop fetching new messages (replies in flight may still be sent)."""

    async def stop(self) -> None: ...


class HttpAdapter(Adapter, Protocol):
    def routes(self) -> list[web.RouteDef]: ...


class Adapters(Protocol):
    """What the composition root (adapters.registry) gives the daemon."""

    def web(self, core: Callable[[], ChatCore]) -> HttpAdapter | None: ...

    def platforms(self, core: ChatCore) -> list[Adapter]: ...

    def webhooks(self, started: Callable[[str], Adapter | None]) -> list[RouteDef]: ...


class Daemon:
    def __init__(self, app: App, adapters: Adapters) -> None:
        self.app = app
        self.config = app.config
        self.adapters: list[Adapter] = []
        self.http: HttpServer | None = None
        self._web = adapters.web(lambda: app.core)
        self._platforms = adapters.platforms
        if self.config.http.enabled:
            self.http = HttpServer(
                app,
                host=self.config.http.host,
                port=self.config.http.port,
                platforms=lambda: {a.name: a.connected for a in self.adapters},
                shards=self._shards,
            )
            if self._web is not None:
                self.http.app.add_routes(self._web.routes())
            self.http.app.add_routes(adapters.webhooks(self._started_adapter))
        elif self._web is not None:
            raise ConfigError(
                "web.enabled needs http.enabled: true (the web chat is served by the HTTP server)"
            )
        self.grace_seconds = self.config.shutdown.grace_seconds
        self.should_exit = asyncio.Event()
        self.ready = asyncio.Event()  # every adapter connected and taking messages
        self._fatal: PlatformError | None = None
        self._started: list[Adapter] = []
        self._connecting: list[asyncio.Task[None]] = []
        self._recovery: list[asyncio.Future[int]] = []

    def _shards(self) -> dict[str, dict[str, bool]]:
        """Each sharded platform's shards (Discord with discord.shard_count), for /healthz."""
        found = {a.name: getattr(a, "shards", None) for a in self.adapters}
        return {name: shards for name, shards in found.items() if shards is not None}

    def _started_adapter(self, name: str) -> Adapter | None:
        return next((a for a in self._started if a.name == name), None)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.should_exit.is_set():
            logger.warning("second %s: exiting now", sig.name)
            os._exit(1)
        logger.info("%s received: shutting down (send it again to exit at once)", sig.name)
        self.should_exit.set()

    async def start(self) -> None:
        if self.http is not None:  # first, so /healthz answers (503) while the model loads
            await self._start_http(self.http)
        try:
            await self.app.start()
            self.adapters = list(self._platforms(self.app.core))
            for adapter in self.adapters:
                self._connecting.append(
                    asyncio.create_task(self._connect(adapter), name=f"{adapter.name}-start")
                )
            if self._web is not None:
                self.adapters.append(self._web)
                await self._web.start()
                await self._web.start_intake()
                self._started.append(self._web)
            if not self._connecting:
                self.ready.set()
        except BaseException:
            await self.stop()
            raise

    async def _start_http(self, http: HttpServer) -> None:
        try:
            await http.start()
        except OSError as exc:
            where = f"{http.host}:{http.port}"
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"http.port {http.port} is already in use on {http.host} by another program: stop it, or "
                    "set http.port in the config to a free port"
                ) from None
            raise ConfigError(
                f"the HTTP server cannot listen on {where}: {exc.strerror or exc}"
                "; set http.host and http.port to an address of this machine"
            ) from None

    async def _connect(self, adapter: Adapter) -> None:
        """Connect with backoff, take recovery's places, then open the intake."""
        delay, attempt = RETRY_FIRST, 1
        while True:
            try:
                await adapter.start()
                break
            except PlatformUnreachable as exc:
                logger.warning("%s (attempt %d; retrying in %.0f s)", exc, attempt, delay)
            except PlatformRejected as exc:
                self._fatal = exc
                self.should_exit.set()
                return
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, RETRY_MAX), attempt + 1
        self._started.append(adapter)
        try:
            self._recovery.append(
                await self.app.core.begin_recovery(
                    adapter.name,
                    adapter.deliver_to,
                    missed_after=self.config.recovery.missed_after_seconds,
                    bot_username=adapter.username,
                )
            )
        except Exception:
            logger.exception(
                "recovering %s messages failed; they stay pending for the next start", adapter.name
            )
        await adapter.start_intake()
        logger.info("%s is taking messages", adapter.name)
        if all(a in self._started for a in self.adapters):
            self.ready.set()

    async def stop(self) -> None:
        """Stop intake, let replies in flight finish, cancel the rest: all within grace_seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_seconds

        def left() -> float:
            return max(0.0, deadline - loop.time())

        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        try:
            core: ChatCore | None = self.app.core
        except RuntimeError:
            core = None
        if core is not None:
            core.close_intake()
        for adapter in self._started:
            await self._bounded(adapter.stop_intake(), left(), f"{adapter.name} did not stop its intake")
        pending = [f for f in self._recovery if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=left())
        if core is not None and not await core.wait_idle(left()):
            logger.warning("replies still in flight after %.0f s; cancelling them", self.grace_seconds)
            cancelled = core.cancel_inflight()
            for future in self._recovery:
                future.cancel()
            await core.wait_idle(UNWIND_SECONDS)
            logger.info("cancelled %d replies; their messages are answered after the restart", cancelled)
        for adapter in reversed(self._started):
            await self._bounded(
                adapter.stop(), max(left(), UNWIND_SECONDS / 2), f"{adapter.name} did not stop"
            )
        self._started.clear()
        await self.app.stop(timeout=max(left(), 0.1))
        if self.http is not None:
            await self.http.stop()
        logger.info("stopped")

    @staticmethod
    async def _bounded(step: Awaitable[None], timeout: float, failure: str) -> None:
        try:
            await asyncio.wait_for(step, timeout=timeout)
        except TimeoutError:
            logger.warning("%s within the shutdown budget", failure)
        except Exception:
            logger.exception("%s cleanly", failure)

    async def serve(self) -> None:
        await self.start()
        names = ", ".join(a.name for a in self.adapters)
        logger.info("blenderd is running with %s", names)
        try:
            await self.should_exit.wait()
        finally:
            await self.stop()
        if self._fatal is not None:
            raise self._fatal
