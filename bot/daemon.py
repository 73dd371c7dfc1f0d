"""`python -m bot run`: start the app and the platform adapters, serve until a signal, stop in order.

Like uvicorn's server: the first SIGTERM/SIGINT sets a flag; shutdown stops taking messages,
lets replies in flight finish within the grace period, then cancels; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web

from bot.app import App
from bot.config import ConfigError
from bot.core import ChatCore
from bot.httpserver import HttpServer
from bot.messages import Reply
from memory import PendingMessage

logger = logging.getLogger(__name__)


class Adapter(Protocol):
    name: str

    def deliver_to(self, pending: PendingMessage) -> Callable[[Reply], Awaitable[None]]:
        """How to send the reply to a message recovered after a crash."""

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop_intake(self) -> None:
        """Stop fetching new messages (replies in flight may still be sent)."""

    async def stop(self) -> None: ...


class HttpAdapter(Adapter, Protocol):
    def routes(self) -> list[web.RouteDef]: ...


class Daemon:
    def __init__(
        self,
        app: App,
        make_adapters: Callable[[ChatCore], Sequence[Adapter]],
        *,
        web: HttpAdapter | None = None,
    ) -> None:
        """``web``: an adapter served by the daemon's HTTP server (its routes are added before it starts)."""
        self.app = app
        self.http: HttpServer | None = None
        if app.config.http.enabled:
            self.http = HttpServer(
                app,
                host=app.config.http.host,
                port=app.config.http.port,
                platforms=lambda: {a.name: a.connected for a in self.adapters},
            )
        if web is not None:
            if self.http is None:
                raise ConfigError("web.enabled needs http.enabled: the web chat is served by the HTTP server")
            self.http.app.add_routes(web.routes())
        self._web = web
        self._make_adapters = make_adapters
        self.adapters: list[Adapter] = []
        self.grace_seconds = app.config.shutdown.grace_seconds
        self.should_exit = asyncio.Event()
        self._started: list[Adapter] = []
        self._recovery: list[asyncio.Task[None]] = []

    async def _recover(self, adapter: Adapter) -> None:
        try:
            await self.app.core.recover(
                adapter.name, adapter.deliver_to, missed_after=self.app.config.recovery.missed_after_seconds
            )
        except Exception:
            logger.exception(
                "recovering %s messages failed; they stay pending for the next start", adapter.name
            )

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
        if self.http is not None:
            await self.http.start()  # first, so /healthz answers (503) while the model loads
        try:
            await self.app.start()
        except BaseException:
            if self.http is not None:
                await self.http.stop()
            raise
        try:
            self.adapters = list(self._make_adapters(self.app.core))
            if self._web is not None:
                self.adapters.append(self._web)
            for adapter in self.adapters:
                await adapter.start()
                self._started.append(adapter)
                self._recovery.append(asyncio.create_task(self._recover(adapter)))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop intake, give replies in flight the grace period, then close everything."""
        try:
            core = self.app.core
        except RuntimeError:
            core = None
        if core is not None:
            core.close_intake()
        for adapter in self._started:
            try:
                await asyncio.wait_for(adapter.stop_intake(), timeout=self.grace_seconds)
            except Exception:
                logger.exception("%s did not stop its intake cleanly", adapter.name)
        if self._recovery:  # let recovery finish what it started (a cancelled query can wedge the driver)
            _, late = await asyncio.wait(self._recovery, timeout=self.grace_seconds)
            for task in late:
                task.cancel()
        if core is not None and not await core.wait_idle(self.grace_seconds):
            logger.warning("replies still in flight after %.0f s; cancelling them", self.grace_seconds)
        for adapter in reversed(self._started):
            try:
                await asyncio.wait_for(adapter.stop(), timeout=self.grace_seconds)
            except Exception:
                logger.exception("%s did not stop cleanly", adapter.name)
        self._started.clear()
        await self.app.stop()
        if self.http is not None:
            await self.http.stop()
        logger.info("stopped")

    async def serve(self) -> None:
        await self.start()
        logger.info("blenderd is running with %s", ", ".join(a.name for a in self.adapters))
        try:
            await self.should_exit.wait()
        finally:
            await self.stop()
