"""The composition root of `python -m bot run`: every adapter the config enables, built in one place.

Platforms (Telegram, Discord) need their token from the environment; the web chat is served on the
daemon's HTTP server. A config that enables nothing stops the start with the fix
(:func:`bot.config.runnable`, checked before anything heavy is imported).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Config, runnable, secret
from bot.core import ChatCore
from bot.daemon import Adapter, HttpAdapter

WEB_TOKEN = "BLENDERD_WEB_TOKEN"


class Registry:
    """Reads the tokens at once (so a missing one fails before the model loads) and builds the adapters."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tokens = runnable(config)

    def web(self, core: Callable[[], ChatCore]) -> HttpAdapter | None:
        if not self.config.web.enabled:
            return None
        from adapters.web import WebAdapter

        return WebAdapter(core, self.config.web, secret(WEB_TOKEN))

    def platforms(self, core: ChatCore) -> list[Adapter]:
        adapters: list[Adapter] = []
        if "telegram" in self.tokens:
            from adapters.telegram import TelegramAdapter

            adapters.append(TelegramAdapter(core, self.config.telegram, self.tokens["telegram"]))
        if "discord" in self.tokens:
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(core, self.config.discord, self.tokens["discord"]))
        return adapters
