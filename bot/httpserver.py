"""The daemon's HTTP server (aiohttp): /healthz for orchestrators and /metrics for Prometheus.

Adapters that speak HTTP (the web chat) add their routes to :attr:`HttpServer.app` before start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from bot.app import App
from bot.metrics import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)


class HttpServer:
    def __init__(
        self,
        app: App,
        *,
        host: str,
        port: int,
        platforms: Callable[[], Mapping[str, bool]] = dict,
        shards: Callable[[], Mapping[str, Mapping[str, bool]]] = dict,
    ) -> None:
        """``platforms``: whether each is connected; ``shards``: each shard of a sharded platform."""
        self.bot = app
        self.host = host
        self.port = port
        self._platforms = platforms
        self._shards = shards
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): read back the one the OS chose
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        logger.info("http server on http://%s:%d (/healthz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {"model": False, "database": False, "platforms": dict(self._platforms())}
        shards = {name: dict(each) for name, each in self._shards().items()}
        if shards:
            checks["shards"] = shards
        try:
            checks["model"] = self.bot.worker.ready
            waiting = sorted(self.bot.core.waiting_for_database)
        except RuntimeError:  # still starting
            waiting = []
        if waiting:  # reads may answer, but messages cannot be stored (e.g. SQLite's write lock is held)
            checks["intake_waiting_for_database"] = waiting
        else:
            with contextlib.suppress(RuntimeError, TimeoutError):
                checks["database"] = await asyncio.wait_for(self.bot.memory.ping(), timeout=3.0)
        ok = bool(checks["model"] and checks["database"] and all(checks["platforms"].values()))
        return ok, checks

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, checks = await self.health()
        return web.json_response(
            {"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.bot.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
