"""What the fake platform servers share: an aiohttp app on an ephemeral 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from aiohttp import web


class FakeServer(ABC):
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add this server's routes."""

    async def start(self, port: int = 0) -> None:
        """Listen on ``port`` (0: any free one; read :attr:`port` afterwards)."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__} did not see what the test waited for")
            await asyncio.sleep(0.02)
