"""The pure mapping from a Discord message to the core's message type: who it is from, whether it
is for this bot, and its text without the mention or prefix. Each thread is its own conversation."""

from __future__ import annotations

import re

import discord

from adapters.common import admitted, strip_prefix
from bot.messages import Incoming
from bot.platform_sections import DiscordConfig

PLATFORM = "discord"
_USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


def _mention_pattern(user_id: int) -> re.Pattern[str]:
    return re.compile(rf"<@!?{user_id}>")


def to_incoming(message: discord.Message, *, me: discord.abc.User, config: DiscordConfig) -> Incoming | None:
    """The core's message for ``message``, or None when the bot should stay silent."""
    author = message.author
    if author.bot or author.id == me.id or message.type not in _USER_MESSAGES:
        return None
    channel_id, user_id = str(message.channel.id), str(author.id)
    guild = message.guild
    if guild is not None and (
        str(guild.id) in config.block_guilds
        or (config.allow_guilds and str(guild.id) not in config.allow_guilds)
    ):
        return None
    if not admitted(config, user_id=user_id, chat_id=channel_id):
        return None
    content = message.content or ""
    has_media = bool(message.attachments or message.stickers)
    if not content.strip() and not has_media:
        return None
    private = guild is None
    text = content
    if not private:
        parent = getattr(message.channel, "parent_id", None)
        mentioned = any(u.id == me.id for u in message.mentions)
        reference = message.reference
        replied = (
            reference is not None
            and isinstance(reference.resolved, discord.Message)
            and (reference.resolved.author.id == me.id)
        )
        prefixed = strip_prefix(content, config.command_prefix)
        answer_all = channel_id in config.answer_all or (
            parent is not None and str(parent) in config.answer_all
        )
        if not (mentioned or replied or prefixed is not None or answer_all):
            return None
        text = _mention_pattern(me.id).sub("", prefixed if prefixed is not None else content).strip()
    return Incoming(
        platform=PLATFORM,
        chat_id=channel_id,
        user_id=user_id,
        text=text if content.strip() else None,
        message_id=str(message.id),
        is_private=private,
    )
