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
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot.core import ChatCore, Deliver
from bot.messages import Incoming
from bot.platform_sections import WebConfig
from memory import ConversationKey, is_outage

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
MAX_BODY = 64 * 1024  # a message is at most a few thousand characters


def to_incoming(browser_id: str, text: str) -> Incoming:
    """The pure mapping from a browser's message to the core's message type."""
    return Incoming(platform=PLATFORM, chat_id=browser_id, user_id=browser_id, text=text, is_private=True)


class WebAdapter:
    name = PLATFORM
    username = None  # commands on the page never name the bot

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
            web.get("/", self._root),
            web.get("/chat", self._page),
            web.get("/chat/static/{name}", self._static),
            web.get("/chat/api/history", self._history),
            web.post("/chat/api/message", self._message),
        ]

    async def start(self) -> None:
        logger.info("web chat on /chat%s", " (token required)" if self._token else "")

    async def start_intake(self) -> None:
        self._open = True

    async def stop_intake(self) -> None:
        self._open = False

    async def stop(self) -> None:
        self._open = False

    def deliver_to(self, message: Incoming) -> Deliver:
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
        browser = _valid_id(request.cookies.get(ID_COOKIE))
        if browser is not None:
            return browser, False
        return secrets.token_hex(16), True

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/chat")

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
            return _error("This chat needs its access token: open /chat?token=<token>.", 401)
        browser = _valid_id(request.cookies.get(ID_COOKIE))
        if browser is None:
            return web.json_response({"turns": []}, headers=_HEADERS)
        try:
            core = self._core()
        except RuntimeError:
            return _error("The bot is starting; try again in a minute.", 503)
        turns = await core.history(ConversationKey(PLATFORM, browser, browser), limit=200)
        return web.json_response(
            {"turns": [{"role": t.role, "text": t.text} for t in turns]}, headers=_HEADERS
        )

    async def _message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error("This chat needs its access token: open /chat?token=<token>.", 401)
        if not self._open:
            return _error("The bot is restarting; try again in a minute.", 503)
        browser = _valid_id(request.cookies.get(ID_COOKIE))
        if browser is None:
            return _error("Reload the page to start a conversation.", 400)
        text = await _text_of(request)
        if isinstance(text, web.Response):
            return text
        try:
            reply = await self._core().handle(to_incoming(browser, text))
        except Exception as exc:  # the page gets a JSON answer whatever happens; the daemon goes on
            if is_outage(exc):
                logger.warning(
                    "web message not answered: the database is unavailable (%s)", exc.__class__.__name__
                )
                return _error("I can't reach my memory right now; please try again in a minute.", 503)
            logger.exception("answering a web message failed")
            return _error("Sorry, something went wrong on my side. Please try again.", 500)
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


def _valid_id(value: str | None) -> str | None:
    """A browser id as the page sets it (32 hex digits); anything else is no id."""
    if value is not None and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_HEADERS)


async def _text_of(request: web.Request) -> str | web.Response:
    """The message text of a request, or the 4xx answer that says what is wrong with it."""
    usage = 'Send JSON like {"text": "hello"}.'
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(f"That message is too long (at most {MAX_BODY // 1024} KiB).", 413)
    try:
        raw = await request.content.read(MAX_BODY + 1)
    except Exception:
        return _error("The message did not arrive completely; please send it again.", 400)
    if len(raw) > MAX_BODY:
        return _error(f"That message is too long (at most {MAX_BODY // 1024} KiB).", 413)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _error(usage, 400)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return _error(usage, 400)
    return str(body["text"])
