"""`python -m bot run`: start the app and the platform adapters, serve until a signal, stop in order.

Like uvicorn's server: the first SIGTERM/SIGINT sets a flag; shutdown stops taking messages,
lets replies in flight finish within the grace period, then cancels; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.app import App
from bot.core import ChatCore

logger = logging.getLogger(__name__)


class Adapter(Protocol):
    name: str

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Daemon:
    def __init__(
        self, app: App, make_adapters: Callable[[ChatCore], Sequence[Adapter]], *, grace_seconds: float = 20.0
    ) -> None:
        self.app = app
        self._make_adapters = make_adapters
        self.adapters: list[Adapter] = []
        self.grace_seconds = grace_seconds
        self.should_exit = asyncio.Event()
        self._started: list[Adapter] = []

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
        await self.app.start()
        try:
            self.adapters = list(self._make_adapters(self.app.core))
            for adapter in self.adapters:
                await adapter.start()
                self._started.append(adapter)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for adapter in reversed(self._started):
            try:
                await asyncio.wait_for(adapter.stop(), timeout=self.grace_seconds)
            except Exception:
                logger.exception("%s did not stop cleanly", adapter.name)
        self._started.clear()
        await self.app.stop()

    async def serve(self) -> None:
        await self.start()
        logger.info("blenderd is running with %s", ", ".join(a.name for a in self.adapters))
        try:
            await self.should_exit.wait()
        finally:
            await self.stop()
