"""The composition root of `python -m bot run`: every adapter the config enables, built in one place.

Platforms (Telegram, Discord) need their token from the environment; the web chat is served on the
daemon's HTTP server. A config that enables nothing stops the start with the fix
(:func:`bot.config.runnable`, checked before anything heavy is imported).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.web import RouteDef

from bot.config import Config, runnable, secret, webhook_secret
from bot.core import ChatCore
from bot.daemon import Adapter, HttpAdapter

WEB_TOKEN = "BLENDERD_WEB_TOKEN"


class Registry:
    """Reads the tokens at once (so a missing one fails before the model loads) and builds the adapters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokens = runnable(config)
        self.webhook_secret = webhook_secret(config) if "telegram" in self.tokens else None

    def web(self, core: Callable[[], ChatCore]) -> HttpAdapter | None:
        if not self.config.web.enabled:
            return None
        from adapters.web import WebAdapter

        return WebAdapter(core, self.config.web, secret(WEB_TOKEN))

    def platforms(self, core: ChatCore) -> list[Adapter]:
        adapters: list[Adapter] = []
        if "telegram" in self.tokens:
            from adapters.telegram import TelegramAdapter

            adapters.append(
                TelegramAdapter(
                    core, self.config.telegram, self.tokens["telegram"], webhook_secret=self.webhook_secret
                )
            )
        if "discord" in self.tokens:
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(core, self.config.discord, self.tokens["discord"]))
        return adapters

    def webhooks(self, started: Callable[[str], Adapter | None]) -> list[RouteDef]:
        """The routes platforms post updates to (Telegram in webhook mode), on the HTTP server from
        its start; ``started`` finds the adapter once it is connected (503 until then)."""
        if self.webhook_secret is None:
            return []

        async def telegram(request: web.Request) -> web.StreamResponse:
            from adapters.telegram import TelegramAdapter

            adapter = started("telegram")
            if not isinstance(adapter, TelegramAdapter):
                return web.json_response({"error": "starting"}, status=503)  # Telegram retries
            return await adapter.receive(request)

        return [web.post(self.config.telegram.webhook_path, telegram)]
