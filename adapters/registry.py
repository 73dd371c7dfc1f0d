"""Which adapters `python -m bot run` starts: each enabled platform, with its token."""

from __future__ import annotations

from bot.config import Config, ConfigError, secret
from bot.core import ChatCore
from bot.daemon import Adapter

TOKENS = {"telegram": "TELEGRAM_TOKEN", "discord": "DISCORD_TOKEN"}


def platform_tokens(config: Config) -> dict[str, str]:
    """The token of every enabled platform; a missing one stops the start with the fix."""
    tokens: dict[str, str] = {}
    for platform, variable in TOKENS.items():
        enabled = getattr(config, platform).enabled
        if enabled is False:
            continue
        token = secret(variable)
        if not token and enabled == "auto":
            continue
        if not token:
            raise ConfigError(
                f"{platform} is enabled in the config but {variable} is not set: export {variable}=<token> "
                f"(or {variable}_FILE=<path>), or set {platform}.enabled: false"
            )
        tokens[platform] = token
    return tokens


def build_adapters(config: Config, core: ChatCore, tokens: dict[str, str]) -> list[Adapter]:
    adapters: list[Adapter] = []
    if "telegram" in tokens:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(core, config.telegram, tokens["telegram"]))
    if "discord" in tokens:
        from adapters.discord import DiscordAdapter

        adapters.append(DiscordAdapter(core, config.discord, tokens["discord"]))
    return adapters
