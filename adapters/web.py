"""The web chat: a small page on the daemon's HTTP server, for self-hosters without Discord or Telegram.

Each browser is a conversation (a random id in an HttpOnly cookie). With ``BLENDERD_WEB_TOKEN``
set, the page needs ``/chat?token=...`` once, which stores the token in a cookie. The page puts
all text into the document with ``textContent`` and is served with a Content-Security-Policy
that allows no inline script, so a reply can never inject markup.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bot.config import WebConfig
from bot.core import ChatCore
from bot.messages import Incoming, Reply
from memory import ConversationKey, PendingMessage

logger = logging.getLogger(__name__)

PLATFORM = "web"
ID_COOKIE = "blenderd_id"
TOKEN_COOKIE = "blenderd_web_token"
STATIC = Path(__file__).resolve().parent / "web_static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_YEAR = 365 * 24 * 3600


def to_incoming(browser_id: str, text: str) -> Incoming:
    """The pure mapping from a browser's message to the core's message type."""
    return Incoming(platform=PLATFORM, chat_id=browser_id, user_id=browser_id, text=text, is_private=True)


class WebAdapter:
    name = PLATFORM

    def __init__(self, core: Callable[[], ChatCore], config: WebConfig, token: str | None) -> None:
        """``core`` returns the running core (it raises RuntimeError while the bot starts)."""
        self._core = core
        self.config = config
        self._token = token
        self._open = False

    @property
    def connected(self) -> bool:
        return self._open

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/chat", self._page),
            web.get("/chat/static/{name}", self._static),
            web.get("/chat/api/history", self._history),
            web.post("/chat/api/message", self._message),
        ]

    async def start(self) -> None:
        self._open = True
        logger.info("web chat on /chat%s", " (token required)" if self._token else "")

    async def stop_intake(self) -> None:
        self._open = False

    async def stop(self) -> None:
        self._open = False

    def deliver_to(self, pending: PendingMessage) -> Callable[[Reply], Awaitable[None]]:
        # Web messages carry no platform id, so they are never in the inbox and never recovered:
        # the reply travels in the HTTP response of the request that asked.
        raise LookupError("web chat replies are returned in their HTTP request and never recovered")

    # -- requests ---------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        if not self._token:
            return True
        offered = request.cookies.get(TOKEN_COOKIE, "")
        return hmac.compare_digest(offered.encode(), self._token.encode())

    def _browser(self, request: web.Request) -> tuple[str, bool]:
        browser = request.cookies.get(ID_COOKIE, "")
        if len(browser) == 32 and browser.isalnum():
            return browser, False
        return secrets.token_hex(16), True

    async def _page(self, request: web.Request) -> web.StreamResponse:
        offered = request.query.get("token")
        if (
            offered is not None
            and self._token
            and hmac.compare_digest(offered.encode(), self._token.encode())
        ):
            redirect = web.HTTPSeeOther("/chat")
            redirect.set_cookie(TOKEN_COOKIE, offered, max_age=_YEAR, httponly=True, samesite="Strict")
            raise redirect
        if not self._authorised(request):
            return web.Response(
                status=401,
                text="This chat needs its access token: open /chat?token=<token>.",
                headers=_HEADERS,
            )
        browser, new = self._browser(request)
        response = web.Response(
            body=(STATIC / "index.html").read_bytes(), content_type="text/html", headers=_HEADERS
        )
        if new:
            response.set_cookie(ID_COOKIE, browser, max_age=_YEAR, httponly=True, samesite="Strict")
        return response

    async def _static(self, request: web.Request) -> web.Response:
        path = STATIC / request.match_info["name"]
        if path.parent != STATIC or path.suffix not in _TYPES or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix], headers=_HEADERS)

    async def _history(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        browser = request.cookies.get(ID_COOKIE)
        if not browser:
            return web.json_response({"turns": []}, headers=_HEADERS)
        try:
            core = self._core()
        except RuntimeError:
            return web.json_response({"error": "The bot is starting; try again in a minute."}, status=503)
        turns = await core.memory.context_turns(ConversationKey(PLATFORM, browser, browser), limit=200)
        return web.json_response(
            {"turns": [{"role": t.role, "text": t.text} for t in turns]}, headers=_HEADERS
        )

    async def _message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        if not self._open:
            return web.json_response({"error": "The bot is restarting; try again in a minute."}, status=503)
        browser = request.cookies.get(ID_COOKIE)
        if not browser:
            return web.json_response({"error": "Reload the page to start a conversation."}, status=400)
        try:
            body = await request.json()
            text = str(body["text"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'Send JSON like {"text": "hello"}.'}, status=400)
        reply = await self._core().handle(to_incoming(browser, text))
        if reply is None:
            return web.json_response({"reply": None}, headers=_HEADERS)
        payload: dict[str, object] = {"reply": reply.text}
        if reply.attachment is not None:
            payload["attachment"] = {
                "filename": reply.attachment.filename,
                "mime_type": reply.attachment.mime_type,
                "content": reply.attachment.content.decode("utf-8"),
            }
        return web.Response(text=json.dumps(payload), content_type="application/json", headers=_HEADERS)
