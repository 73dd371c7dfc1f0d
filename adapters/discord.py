"""Discord through discord.py 2, on the core's event loop (login + connect, never client.run).

``to_incoming`` is the pure mapping from a Discord message to the core's message type. Replies
are plain text with mentions disabled (``AllowedMentions.none()``), so a reply can never ping
@everyone or anyone else. Each thread is its own conversation (its channel id). The commands
work as slash commands everywhere and as plain text in DMs.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import discord
from discord import app_commands

from adapters.common import PlatformAdapter, send_reply, with_retries
from adapters.discord_incoming import PLATFORM, to_incoming
from bot.commands import COMMANDS
from bot.core import ChatCore, Deliver
from bot.daemon import PlatformRejected, PlatformUnreachable
from bot.messages import Attachment, Incoming, Reply
from bot.platform_sections import DiscordConfig

logger = logging.getLogger(__name__)

LIMIT = 2000
TYPING_EVERY = 8.0  # Discord shows "typing" for 10 s
READY_TIMEOUT = 60.0
IDENTIFY_SECONDS = 6.0


def _retry_after(exc: BaseException) -> float | None:
    # discord.py itself waits out 429s; what reaches here is a server error or a broken connection.
    if isinstance(exc, discord.HTTPException):
        return 1.0 if exc.status >= 500 else None
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return 1.0
    return None


def _client(config: DiscordConfig, intents: discord.Intents) -> discord.Client:
    """A plain client, or with discord.shard_count an AutoShardedClient running discord.shard_ids
    (all shards when empty) on one gateway connection each."""
    options: dict[str, Any] = {
        "intents": intents,
        "allowed_mentions": discord.AllowedMentions.none(),
        "proxy": config.proxy,
    }
    if config.shard_count is None:
        return discord.Client(**options)
    if config.shard_ids:
        options["shard_ids"] = list(config.shard_ids)
    count = None if config.shard_count == "auto" else config.shard_count  # None: Discord recommends
    return discord.AutoShardedClient(shard_count=count, **options)


def _file(attachment: Attachment) -> discord.File:
    return discord.File(io.BytesIO(attachment.content), filename=attachment.filename)


class DiscordAdapter(PlatformAdapter):
    name = PLATFORM
    typing_every = TYPING_EVERY

    def __init__(self, core: ChatCore, config: DiscordConfig, token: str) -> None:
        super().__init__(core)
        self.config = config
        self._token = token
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True
        self.client = _client(config, intents)
        self._shard_ready: dict[int, bool] = {}
        self.tree = app_commands.CommandTree(self.client)
        for name, description in COMMANDS.items():
            self.tree.add_command(
                app_commands.Command(
                    name=name, description=description[:100], callback=self._slash_callback(name)
                )
            )

        @self.client.event
        async def on_message(message: discord.Message) -> None:
            await self._on_message(message)

        @self.client.event
        async def on_shard_ready(shard_id: int) -> None:
            self._shard_ready[shard_id] = True

        @self.client.event
        async def on_shard_resumed(shard_id: int) -> None:
            self._shard_ready[shard_id] = True

        @self.client.event
        async def on_shard_disconnect(shard_id: int) -> None:
            self._shard_ready[shard_id] = False

        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def connected(self) -> bool:
        shards = self.shards
        return self.client.is_ready() and not self.client.is_closed() and all((shards or {}).values())

    @property
    def shards(self) -> dict[str, bool] | None:
        """Whether each shard this process runs is connected (for /healthz); None without sharding."""
        if not isinstance(self.client, discord.AutoShardedClient):
            return None
        running = set(self.client.shard_ids or ()) | set(self.client.shards) | set(self._shard_ready)
        return {str(i): self._shard_ready.get(i, False) for i in sorted(running)}

    async def start(self) -> None:
        """Log in and connect the gateway; raises PlatformRejected for a token Discord refuses and
        PlatformUnreachable when it cannot be reached (closing what it opened, so it can be retried)."""
        try:
            await self._connect()
        except discord.LoginFailure:
            await self._reset()
            raise PlatformRejected(
                "discord rejected DISCORD_TOKEN (401 Unauthorized): copy the bot's token from the Discord "
                "developer portal (Bot > Reset Token) into DISCORD_TOKEN (or DISCORD_TOKEN_FILE)"
            ) from None
        except discord.PrivilegedIntentsRequired:
            await self._reset()
            raise PlatformRejected(
                "discord refused the Message Content intent: enable it for the bot in the Discord developer "
                "portal (Bot > Privileged Gateway Intents)"
            ) from None
        except (
            aiohttp.ClientError,
            OSError,
            TimeoutError,
            discord.HTTPException,
            discord.GatewayNotFound,
        ) as exc:
            await self._reset()
            raise PlatformUnreachable(
                f"discord cannot be reached ({exc.__class__.__name__}: {str(exc).strip() or 'no answer'}): "
                "check the network and discord.proxy"
            ) from None
        assert self.client.user is not None
        logger.info("discord connected as %s", self.client.user.name)

    async def _connect(self) -> None:
        await self.client.login(self._token)
        self._task = asyncio.create_task(self._gateway(), name="discord-gateway")
        ready = asyncio.create_task(self.client.wait_until_ready())
        # Discord lets a bot identify one shard per 5 s (per concurrency bucket): more shards, longer.
        shards = len(self.config.shard_ids) or (
            self.config.shard_count if isinstance(self.config.shard_count, int) else 1
        )
        timeout = READY_TIMEOUT + IDENTIFY_SECONDS * shards
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._task in done:
                self._task.result()  # raises why the gateway connection ended
            raise TimeoutError(f"the gateway was not ready after {timeout:.0f} s")
        if self.config.slash_commands:
            await with_retries(self.tree.sync, what="discord command sync", retry_after=_retry_after)

    async def _reset(self) -> None:
        """Close the HTTP session and gateway of a failed start, and make the client reusable."""
        self._stopping = True
        await self.client.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.client.clear()
        self._stopping = False

    async def start_intake(self) -> None:
        self.intake.start()

    async def _gateway(self) -> None:
        """Keep the gateway connected: discord.py reconnects on network errors by itself, and this
        loop restarts it after anything else that ends the connection (a payload it cannot parse)."""
        delay = 1.0
        while not self._stopping:
            try:
                await self.client.connect(reconnect=True)
            except (discord.LoginFailure, discord.PrivilegedIntentsRequired):
                raise
            except Exception:
                if self._stopping or self.client.is_closed():
                    return
                logger.exception("discord gateway connection ended; reconnecting in %.0f s", delay)
            else:
                if self._stopping or self.client.is_closed():
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def stop_intake(self) -> None:
        """Discord pushes messages over the gateway; the core answers them "restarting" from now on."""

    async def stop(self) -> None:
        self._stopping = True
        await self.client.close()
        await self.intake.stop()
        if self._task is not None:
            try:
                await self._task
            except Exception as exc:
                logger.debug("discord gateway task ended with %s", exc.__class__.__name__)

    async def _on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None:
            return
        incoming = to_incoming(message, me=me, config=self.config)
        if incoming is not None:
            self.intake.put(incoming)  # stored in arrival order; the gateway does not wait for it

    async def show_typing(self, message: Incoming) -> None:
        await self.client.get_partial_messageable(int(message.chat_id)).typing()

    def deliver_to(self, message: Incoming) -> Deliver:
        """Replies in servers answer the message (a reply reference); in DMs they are plain messages."""
        channel = self.client.get_partial_messageable(int(message.chat_id))
        reference = None
        if not message.is_private and message.message_id is not None:
            reference = discord.MessageReference(
                message_id=int(message.message_id), channel_id=int(message.chat_id), fail_if_not_exists=False
            )
        return functools.partial(self._send, channel, reference=reference)

    async def _send(
        self, channel: discord.abc.Messageable, reply: Reply, *, reference: discord.MessageReference | None
    ) -> None:
        """Send the parts of a reply in order, the first answering ``reference``; raise on final failure."""

        def text(part: str, first: bool) -> Awaitable[object]:
            if first and reference is not None:
                return channel.send(part, reference=reference)
            return channel.send(part)

        def file(attachment: Attachment) -> Awaitable[object]:
            return channel.send(reply.text, file=_file(attachment))

        await send_reply(
            reply, limit=LIMIT, send_text=text, send_file=file, what="discord send", retry_after=_retry_after
        )

    def _slash_callback(self, name: str) -> Callable[..., Coroutine[Any, Any, None]]:
        if name == "memory":  # the one command with an argument: "forget N", "off" or "on"

            @app_commands.describe(action="forget N, off or on (empty: list what I remember)")
            async def memory(interaction: discord.Interaction, action: str | None = None) -> None:
                await self._slash(interaction, "/memory" + (f" {action}" if action else ""))

            return memory

        async def callback(interaction: discord.Interaction) -> None:
            await self._slash(interaction, f"/{name}")

        callback.__name__ = f"{name}_command"
        return callback

    async def _slash(self, interaction: discord.Interaction, text: str) -> None:
        incoming = Incoming(
            platform=PLATFORM,
            chat_id=str(interaction.channel_id),
            user_id=str(interaction.user.id),
            text=text,
            is_private=interaction.guild_id is None,
        )
        reply = await self.core.handle(incoming)
        if reply is None:
            return
        if reply.attachment is not None:
            await interaction.response.send_message(reply.text, file=_file(reply.attachment), ephemeral=True)
        else:
            await interaction.response.send_message(reply.text[:LIMIT], ephemeral=True)
