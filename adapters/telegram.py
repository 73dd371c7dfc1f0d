"""Telegram through python-telegram-bot 22, on the core's event loop (no run_polling).

``to_incoming`` is the pure mapping from a Telegram message to the core's message type; the
adapter around it owns a PTB ``Bot`` (initialize, updates, shutdown) and sends replies as plain
text. Updates come one of two ways (``telegram.mode``): polling, where the adapter long-polls
getUpdates and confirms an update only once it is stored; or webhook, where Telegram posts each
update to the daemon's HTTP server (:meth:`TelegramAdapter.receive`), which checks the secret
token header and answers 200 only once the update is stored, so Telegram redelivers anything a
crash interrupted. Behind a load balancer, replicas on one database answer each update once
(the inbox keeps one row per message).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import json
import logging
import warnings
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from aiohttp import web
from telegram import Bot, BotCommand, Update, User
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from adapters.common import PlatformAdapter, send_reply
from adapters.telegram_incoming import PLATFORM, to_incoming
from bot.commands import COMMANDS
from bot.core import ChatCore, Deliver
from bot.daemon import PlatformRejected, PlatformUnreachable
from bot.messages import Attachment, Incoming, Reply
from bot.platform_sections import TelegramConfig

logger = logging.getLogger(__name__)

LIMIT = 4096
TYPING_EVERY = 4.0  # Telegram shows "typing" for 5 s
POLL_TIMEOUT = 10  # seconds a getUpdates long poll waits for news
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_CONNECTIONS = 40  # how many webhook requests Telegram may have open at once


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

    def __init__(
        self, core: ChatCore, config: TelegramConfig, token: str, *, webhook_secret: str | None = None
    ) -> None:
        """``webhook_secret``: the secret token of webhook mode (``telegram.mode: webhook``)."""
        super().__init__(core)
        self.config = config
        self._secret = webhook_secret if config.mode == "webhook" else None
        if config.mode == "webhook" and not webhook_secret:
            raise ValueError("telegram webhook mode needs its secret token")
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
        self._receiving = False  # webhook mode: the intake is open

    @property
    def connected(self) -> bool:
        if self._secret is not None:
            return self._receiving
        return self._poller is not None and not self._poller.done() and self._polling_ok

    @property
    def username(self) -> str | None:
        return None if self._me is None else self._me.username

    async def start(self) -> None:
        """Log in (getMe), register the commands, and set the webhook (webhook mode) or drop one
        (polling); raises PlatformRejected for a token or webhook URL Telegram refuses,
        PlatformUnreachable when it cannot be reached."""
        try:
            await self.bot.initialize()
            self._me = self.bot.bot
            commands = [BotCommand(name, what) for name, what in COMMANDS.items()]
            await self.bot.set_my_commands(commands)
            if self._secret is not None:
                await self._set_webhook(self._secret)
            else:
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
        logger.info(
            "telegram connected as @%s (%s)",
            self._me.username,
            f"webhook at {self.config.webhook_url}" if self._secret else "polling",
        )

    async def _set_webhook(self, secret: str) -> None:
        url = self.config.webhook_url
        try:
            await self.bot.set_webhook(
                url or "",
                secret_token=secret,
                allowed_updates=[Update.MESSAGE],
                max_connections=WEBHOOK_CONNECTIONS,
            )
        except BadRequest as exc:
            raise PlatformRejected(
                f"telegram refused the webhook {url} ({_reason(exc)}): telegram.webhook_url must be a public "
                "https URL on port 443, 80, 88 or 8443 that reaches this daemon's HTTP server"
            ) from None

    async def start_intake(self) -> None:
        self.intake.start()
        if self._secret is not None:
            self._receiving = True
            return
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

    async def receive(self, request: web.Request) -> web.Response:
        """A webhook request: 200 once its update is stored (or is not for the bot); Telegram
        retries anything else, so nothing is lost while the daemon starts, stops or waits for
        the database."""
        assert self._secret is not None
        offered = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(offered.encode(), self._secret.encode()):
            logger.warning("telegram webhook: a request without the right secret token was refused")
            return web.json_response({"error": "unauthorized"}, status=401)
        if not self._receiving:
            return web.json_response({"error": "not taking updates now"}, status=503)
        try:
            update = Update.de_json(json.loads(await request.read()), self.bot)
            incoming = self._incoming(update)
        except Exception as exc:  # one bad update must never stop the intake
            logger.warning(
                "telegram webhook: an update could not be read (%s); skipped", exc.__class__.__name__
            )
            return web.json_response({"error": "not an update"}, status=400)
        if incoming is not None and not await self.intake.put(incoming):
            return web.json_response({"error": "stopping"}, status=503)  # not stored: Telegram retries
        return web.json_response({"ok": True})

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
        """Stop taking updates; those not taken yet stay on Telegram's side for the next start (the
        webhook stays set: replicas behind the same URL go on taking them)."""
        if self._receiving:
            self._receiving = False
            await self.intake.stop()
            return
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
