"""The platform sections of config.yaml: who the bot answers on Telegram and Discord, the web chat,
and how each connects (Telegram polling or webhook, Discord shards)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bot.sections import Section


class PlatformConfig(Section):
    """Who the bot answers on a platform. Ids are strings (Telegram and Discord ids are numbers)."""

    # true, false, or "auto": on when the platform's token is set in the environment.
    enabled: bool | Literal["auto"] = False
    proxy: str | None = Field(default=None, description="http://, https:// or socks5:// proxy URL")
    # In groups the bot answers when mentioned, replied to, or addressed with this prefix.
    command_prefix: str | None = None
    # Chats/channels where it answers every message.
    answer_all: tuple[str, ...] = ()
    allow_users: tuple[str, ...] = ()
    block_users: tuple[str, ...] = ()
    allow_chats: tuple[str, ...] = ()
    block_chats: tuple[str, ...] = ()

    @field_validator("answer_all", "allow_users", "block_users", "allow_chats", "block_chats", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ValueError("must start with http://, https://, socks5:// or socks5h://")
        return value


class TelegramConfig(PlatformConfig):
    # A self-hosted Bot API server: set its URL, ending in /bot (the token is appended).
    api_base_url: str = "https://api.telegram.org/bot"
    api_base_file_url: str = "https://api.telegram.org/file/bot"
    # polling: the daemon fetches updates (getUpdates; one process per bot). webhook: Telegram
    # posts each update to webhook_url, served at its path by the daemon's HTTP server.
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _public_https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be the public https:// URL Telegram posts updates to")
        return value

    @property
    def webhook_path(self) -> str:
        """The path of webhook_url, where the HTTP server takes the updates."""
        path = urlsplit(self.webhook_url or "").path
        return path if path not in ("", "/") else "/telegram/webhook"


class DiscordConfig(PlatformConfig):
    @field_validator("proxy")
    @classmethod
    def _http_proxy_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("discord.py supports http:// and https:// proxies only")
        return value

    # Servers (guilds) allowed/blocked, in addition to the user and channel lists.
    allow_guilds: tuple[str, ...] = ()
    block_guilds: tuple[str, ...] = ()
    # Register /help, /reset, /forget, /export as slash commands at start.
    slash_commands: bool = True
    # Sharding (required by Discord from 2,500 servers; each shard at most 2,500; DMs arrive on
    # shard 0). shard_count: how many shards the bot has in all, "auto" for Discord's
    # recommendation; shard_ids: the ones this process runs (empty: all of them). Unset: no sharding.
    shard_count: int | Literal["auto"] | None = Field(default=None)
    shard_ids: tuple[int, ...] = ()

    @field_validator("shard_count")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or auto)")
        return value

    @model_validator(mode="after")
    def _ids_within_count(self) -> DiscordConfig:
        if self.shard_ids and not isinstance(self.shard_count, int):
            raise ValueError("discord.shard_ids needs discord.shard_count: the number of shards in all")
        if isinstance(self.shard_count, int):
            outside = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
            if outside:
                raise ValueError(f"discord.shard_ids {outside} are not below shard_count {self.shard_count}")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("discord.shard_ids lists a shard twice")
        return self

    @field_validator("allow_guilds", "block_guilds", mode="before")
    @classmethod
    def _guild_ids_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value


class WebConfig(Section):
    # The web chat at /chat on the HTTP server (http.host and http.port). An access token, when
    # wanted, comes from BLENDERD_WEB_TOKEN; the page is then opened once as /chat?token=<token>.
    enabled: bool = False
