"""Telegram through python-telegram-bot 22, on the core's event loop (no run_polling).

``to_incoming`` is the pure mapping from a Telegram message to the core's message type; the
adapter around it owns the PTB Application's lifecycle (initialize, start, polling, and the
reverse on stop) and sends replies as plain text.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import BotCommand, Message, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from adapters.common import admitted, split_reply, strip_prefix, typing, with_retries
from bot.commands import COMMANDS
from bot.config import TelegramConfig
from bot.core import ChatCore
from bot.messages import Incoming, Reply
from memory import PendingMessage

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
LIMIT = 4096
TYPING_EVERY = 4.0  # Telegram shows "typing" for 5 s
_MEDIA = (
    "sticker",
    "photo",
    "voice",
    "audio",
    "video",
    "video_note",
    "document",
    "animation",
    "contact",
    "location",
    "venue",
    "poll",
    "dice",
)


def _addressed(message: Message, me: User, config: TelegramConfig) -> tuple[bool, str]:
    """Whether a group message is for the bot, and its text without the mention or prefix."""
    text = message.text or ""
    if str(message.chat.id) in config.answer_all:
        return True, text
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True, text
    mention = f"@{me.username}" if me.username else None
    if mention and mention.lower() in text.lower():
        start = text.lower().index(mention.lower())
        return True, (text[:start] + text[start + len(mention) :]).strip()
    if text.startswith("/"):
        first = text.split(maxsplit=1)[0]
        if mention and first.lower().endswith(mention.lower()):
            return True, text
    rest = strip_prefix(text, config.command_prefix)
    if rest is not None:
        return True, rest
    return False, text


def to_incoming(message: Message, *, me: User, config: TelegramConfig) -> Incoming | None:
    """The core's message for ``message``, or None when the bot should stay silent."""
    author = message.from_user
    if author is None or author.is_bot or author.id == me.id:
        return None
    chat_id, user_id = str(message.chat.id), str(author.id)
    if not admitted(config, user_id=user_id, chat_id=chat_id):
        return None
    private = message.chat.type == ChatType.PRIVATE
    has_media = any(getattr(message, kind) for kind in _MEDIA)
    if message.text is None and not has_media:
        return None  # a service message: members joined, a pin, a title change...
    text: str | None = message.text
    if not private:
        addressed, stripped = _addressed(message, me, config)
        if not addressed:
            return None
        text = stripped if message.text is not None else None
    return Incoming(
        platform=PLATFORM,
        chat_id=chat_id,
        user_id=user_id,
        text=text if message.text is not None else None,
        message_id=str(message.message_id),
        is_private=private,
    )


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():  # PTB 22.2+ warns that an int will become a timedelta
            warnings.simplefilter("ignore")
            wait = exc.retry_after
        return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
    if isinstance(exc, BadRequest | Forbidden | InvalidToken):
        return None
    if isinstance(exc, NetworkError):  # includes TimedOut
        return 1.0
    return None


class TelegramAdapter:
    name = PLATFORM

    def __init__(self, core: ChatCore, config: TelegramConfig, token: str) -> None:
        self.core = core
        self.config = config
        builder = (
            Application.builder()
            .token(token)
            .base_url(config.api_base_url)
            .base_file_url(config.api_base_file_url)
            .concurrent_updates(256)  # the core keeps each conversation in order
        )
        if config.proxy:
            builder = builder.proxy(config.proxy).get_updates_proxy(config.proxy)
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        self.app.add_error_handler(self._on_error)
        self._me: User | None = None

    @property
    def connected(self) -> bool:
        updater = self.app.updater
        return bool(self.app.running and updater is not None and updater.running)

    async def start(self) -> None:
        await self.app.initialize()
        self._me = self.app.bot.bot
        commands = [BotCommand(name, what) for name, what in COMMANDS.items()]
        await with_retries(
            lambda: self.app.bot.set_my_commands(commands),
            what="telegram setMyCommands",
            retry_after=_retry_after,
        )
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            poll_interval=0.0, timeout=dt.timedelta(seconds=10), allowed_updates=[Update.MESSAGE]
        )
        logger.info("telegram connected as @%s", self._me.username)

    async def stop_intake(self) -> None:
        """Stop polling: updates not fetched yet stay on Telegram's side for the next start."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()  # confirms the last offset: fetched updates are not redelivered

    async def stop(self) -> None:
        await self.stop_intake()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or self._me is None:
            return
        incoming = to_incoming(message, me=self._me, config=self.config)
        if incoming is None:
            return
        chat_id = message.chat.id
        reply_to = None if incoming.is_private else message.message_id
        try:
            async with typing(
                lambda: self.app.bot.send_chat_action(chat_id, ChatAction.TYPING), TYPING_EVERY
            ):
                await self.core.handle(
                    incoming,
                    bot_username=self._me.username,
                    deliver=functools.partial(self._send, chat_id, reply_to=reply_to),
                )
        except Exception:
            logger.exception(
                "telegram: a message in chat %s stays pending; it is answered after a restart", chat_id
            )

    def deliver_to(self, pending: PendingMessage) -> Callable[[Reply], Awaitable[None]]:
        """How to send the reply to a message recovered after a crash."""
        reply_to = None if pending.is_private else int(pending.message_id)
        return functools.partial(self._send, int(pending.chat_id), reply_to=reply_to)

    async def _send(self, chat_id: int, reply: Reply, *, reply_to: int | None) -> None:
        """Send a reply, retrying rate limits and network errors; raises when it finally fails."""
        bot = self.app.bot
        try:
            if reply.attachment is not None:
                attachment = reply.attachment
                await with_retries(
                    lambda: bot.send_document(
                        chat_id,
                        document=attachment.content,
                        filename=attachment.filename,
                        caption=reply.text[:1024],
                    ),
                    what="telegram sendDocument",
                    retry_after=_retry_after,
                )
                return
            for i, part in enumerate(split_reply(reply.text, LIMIT)):
                target = reply_to if i == 0 else None
                await with_retries(
                    functools.partial(
                        bot.send_message,
                        chat_id,
                        part,
                        reply_to_message_id=target,
                        allow_sending_without_reply=True,
                    ),
                    what="telegram sendMessage",
                    retry_after=_retry_after,
                )
        except Exception:
            logger.error("telegram: could not deliver a reply to chat %s after retries", chat_id)
            raise

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("telegram handler error: %r", context.error, exc_info=context.error)
