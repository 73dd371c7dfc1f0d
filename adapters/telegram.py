"""Telegram through python-telegram-bot 22, on the core's event loop (no run_polling).

``to_incoming`` is the pure mapping from a Telegram message to the core's message type; the
adapter around it owns a PTB ``Bot`` (initialize, getUpdates long polling, shutdown) and sends
replies as plain text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import warnings
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from telegram import Bot, BotCommand, Message, MessageEntity, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from adapters.common import PlatformAdapter, admitted, send_reply, strip_prefix
from bot.commands import COMMANDS
from bot.core import ChatCore, Deliver
from bot.daemon import PlatformRejected, PlatformUnreachable
from bot.messages import Attachment, Incoming, Reply
from bot.sections import TelegramConfig

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
LIMIT = 4096
TYPING_EVERY = 4.0  # Telegram shows "typing" for 5 s
POLL_TIMEOUT = 10  # seconds a getUpdates long poll waits for news
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


def _command_target(message: Message) -> str | None:
    """The bot a leading /command names (``/help@name``): "" for none, None when no command leads."""
    for entity, command in message.parse_entities([MessageEntity.BOT_COMMAND]).items():
        if entity.offset == 0:
            return command.partition("@")[2].lower()
    return None


def _mentions_me(message: Message, me: User) -> list[str]:
    """The texts of the entities that mention this bot: ``@name`` whole, or a text mention of its id."""
    name = (me.username or "").lower()
    found = []
    for entity, text in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
        if entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == me.id:
                found.append(text)
        elif name and text[1:].lower() == name:
            found.append(text)
    return found


def _addressed(message: Message, me: User, config: TelegramConfig) -> tuple[bool, str]:
    """Whether a group message is for the bot, and its text without the mention or prefix.

    Mentions and commands are read from the message's entities, as Telegram marked them: only a
    whole ``@ourbot`` counts (``@ourbot_helper`` is another bot), and ``/help@otherbot`` is not ours.
    """
    text = message.text or ""
    target = _command_target(message)
    if target and target != (me.username or "").lower():
        return False, text  # a command for another bot
    if str(message.chat.id) in config.answer_all:
        return True, text
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True, text
    if target:
        return True, text  # /command@ourbot
    mentions = _mentions_me(message, me)
    if mentions:
        for mention in mentions:
            text = text.replace(mention, " ", 1)
        return True, " ".join(text.split())
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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "no answer"


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


class TelegramAdapter(PlatformAdapter):
    """Long-polls getUpdates itself: each update is written to the inbox before the next call
    confirms it to Telegram, so a crash loses no message."""

    name = PLATFORM
    typing_every = TYPING_EVERY

    def __init__(self, core: ChatCore, config: TelegramConfig, token: str) -> None:
        super().__init__(core)
        self.config = config
        self.bot = Bot(
            token,
            base_url=config.api_base_url,
            base_file_url=config.api_base_file_url,
            request=HTTPXRequest(connection_pool_size=32, proxy=config.proxy),
            get_updates_request=HTTPXRequest(connection_pool_size=1, proxy=config.proxy),
        )
        self._me: User | None = None
        self._poller: asyncio.Task[None] | None = None
        self._offset: int | None = None
        self._polling_ok = False
        self._stopping = False
        self._fetch: asyncio.Future[Any] | None = None

    @property
    def connected(self) -> bool:
        return self._poller is not None and not self._poller.done() and self._polling_ok

    @property
    def username(self) -> str | None:
        return None if self._me is None else self._me.username

    async def start(self) -> None:
        """Log in (getMe), register the commands, and drop a webhook; raises PlatformRejected for a
        token Telegram refuses, PlatformUnreachable when it cannot be reached."""
        try:
            await self.bot.initialize()
            self._me = self.bot.bot
            commands = [BotCommand(name, what) for name, what in COMMANDS.items()]
            await self.bot.set_my_commands(commands)
            await self.bot.delete_webhook()
        except InvalidToken:
            raise PlatformRejected(
                "telegram rejected TELEGRAM_TOKEN (401 Unauthorized): copy the bot's token from @BotFather "
                "into TELEGRAM_TOKEN (or TELEGRAM_TOKEN_FILE)"
            ) from None
        except (NetworkError, TelegramError, OSError) as exc:
            raise PlatformUnreachable(
                f"telegram cannot be reached at {self.config.api_base_url} ({exc.__class__.__name__}: "
                f"{_reason(exc)}): check the network, telegram.proxy and telegram.api_base_url"
            ) from None
        logger.info("telegram connected as @%s", self._me.username)

    async def start_intake(self) -> None:
        self.intake.start()
        self._polling_ok = True
        self._poller = asyncio.create_task(self._poll(), name="telegram-poll")

    async def _poll(self) -> None:
        delay = 1.0
        while not self._stopping:
            # Only the network call is ever cancelled (by stop_intake); storing an update runs to its end.
            self._fetch = asyncio.ensure_future(
                self.bot.get_updates(
                    offset=self._offset, timeout=POLL_TIMEOUT, allowed_updates=[Update.MESSAGE]
                )
            )
            try:
                updates = await self._fetch
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as exc:
                self._polling_ok = False
                wait = _retry_after(exc)
                if wait is None and isinstance(exc, InvalidToken):
                    logger.error("telegram rejected the token; polling stops")
                    return
                logger.warning(
                    "telegram getUpdates failed (%s); retrying in %.0f s",
                    exc.__class__.__name__,
                    max(wait or 0, delay),
                )
                await asyncio.sleep(max(wait or 0, delay))
                delay = min(delay * 2, 60.0)
                continue
            self._polling_ok, delay = True, 1.0
            for update in updates:
                try:
                    incoming = self._incoming(update)
                except Exception:  # one update must never stop the intake
                    logger.exception("telegram update %d could not be read; it is skipped", update.update_id)
                    incoming = None
                if incoming is not None and not await self.intake.put(incoming):  # stored before confirmed
                    return  # shutdown came while the database was away: fetched again next start
                self._offset = update.update_id + 1

    def _incoming(self, update: Update) -> Incoming | None:
        message = update.message
        if message is None or self._me is None:
            return None
        return to_incoming(message, me=self._me, config=self.config)

    async def show_typing(self, message: Incoming) -> None:
        await self.bot.send_chat_action(int(message.chat_id), ChatAction.TYPING)

    def deliver_to(self, message: Incoming) -> Deliver:
        """Replies in groups answer the message; in private chats they are plain messages."""
        assert message.message_id is not None
        reply_to = None if message.is_private else int(message.message_id)
        return functools.partial(self._send, int(message.chat_id), reply_to=reply_to)

    async def stop_intake(self) -> None:
        """Stop polling; updates not fetched yet stay on Telegram's side for the next start."""
        if self._poller is None:
            return
        self._stopping = True
        self.intake.close()  # a store waiting out a database outage gives up: the update stays unconfirmed
        if self._fetch is not None:
            self._fetch.cancel()
        await asyncio.wait({self._poller})
        self._poller = None
        self._polling_ok = False
        await self.intake.stop()
        if self._offset is not None:  # confirm what was stored, as a clean stop
            with suppress(Exception):
                await self.bot.get_updates(offset=self._offset, timeout=0, allowed_updates=[Update.MESSAGE])

    async def stop(self) -> None:
        await self.stop_intake()
        with suppress(Exception):  # never initialised when the start failed
            await self.bot.shutdown()

    async def _send(self, chat_id: int, reply: Reply, *, reply_to: int | None) -> None:
        """Send a reply, retrying rate limits and network errors; raises when it finally fails."""

        def text(part: str, first: bool) -> Awaitable[object]:
            target = reply_to if first else None
            return self.bot.send_message(
                chat_id, part, reply_to_message_id=target, allow_sending_without_reply=True
            )

        def file(attachment: Attachment) -> Awaitable[object]:
            return self.bot.send_document(
                chat_id, document=attachment.content, filename=attachment.filename, caption=reply.text[:1024]
            )

        await send_reply(
            reply, limit=LIMIT, send_text=text, send_file=file, what="telegram send", retry_after=_retry_after
        )
