"""A fake Telegram Bot API server on 127.0.0.1 for the real python-telegram-bot client.

It keeps updates until a getUpdates call confirms them with a higher offset (as Telegram does),
long-polls, records every call, and can answer the next calls of a method with an error such as
429 "retry after".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.fakes.server import FakeServer


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeTelegram(FakeServer):
    def __init__(self, token: str = "123:FAKE", *, username: str = "blenderd_bot") -> None:
        super().__init__()
        self.token = token
        self.me = {
            "id": 999,
            "is_bot": True,
            "first_name": "Blender",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.updates: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.unauthorized: list[str] = []  # methods called with a wrong token
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._chats: dict[int, dict[str, Any]] = {}
        self._closing = False
        self.webhook: dict[str, Any] | None = None  # what setWebhook set: url, secret_token, ...

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)

    async def stop(self) -> None:
        self._closing = True
        self._new_update.set()  # release long polls still held open
        await super().stop()

    # -- what tests do --------------------------------------------------------------------

    def chat(self, chat_id: int, kind: str = "private", title: str | None = None) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": kind}
        if kind == "private":
            chat["first_name"] = f"user{chat_id}"
        else:
            chat["title"] = title or f"group{chat_id}"
        self._chats[chat_id] = chat
        return chat

    def send(
        self, chat: dict[str, Any], user_id: int, text: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A person sends a message; it becomes a pending update."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": extra.pop("is_bot", False), "first_name": f"user{user_id}"},
        }
        if text is not None:
            message["text"] = text
            entities = [
                {"type": "mention", "offset": i, "length": len(w)}
                for i, w in _words(text)
                if w.startswith("@")
            ]
            if text.startswith("/"):
                entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
            if entities:
                message["entities"] = entities
        message.update(extra)
        self.push({"message": message})
        return message

    def push(self, update: dict[str, Any]) -> None:
        self.updates.append({"update_id": next(self._update_ids), **update})
        self._new_update.set()

    def fail_next(self, method: str, status: int, body: dict[str, Any], times: int = 1) -> None:
        self.failures.setdefault(method, []).extend([(status, body)] * times)

    @staticmethod
    def replied_to(call: Call) -> int | None:
        """The message a sendMessage answers (PTB sends ``reply_parameters``; older clients
        ``reply_to_message_id``)."""
        parameters = call.params.get("reply_parameters")
        if isinstance(parameters, str):
            parameters = json.loads(parameters)
        if isinstance(parameters, dict):
            return int(parameters["message_id"])
        legacy = call.params.get("reply_to_message_id")
        return None if legacy is None else int(legacy)

    def sent(self, method: str = "sendMessage", chat_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == method and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))
        ]

    # -- the Bot API --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            self.unauthorized.append(request.match_info["method"])
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            params = await request.json()
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.filename, value.file.read())
                else:
                    params[key] = _decode(str(value))
        if method != "getUpdates":
            self.calls.append(Call(method, params, files))
        elif self.webhook is not None:  # as Telegram: one way of getting updates at a time
            description = "Conflict: can't use getUpdates method while webhook is active"
            return web.json_response({"ok": False, "error_code": 409, "description": description}, status=409)
        queued = self.failures.get(method)
        if queued:
            status, body = queued.pop(0)
            return web.json_response({"ok": False, "error_code": status, **body}, status=status)
        handler = getattr(self, f"_m_{method}", None)
        result = await handler(params, files) if handler is not None else True
        return web.json_response({"ok": True, "result": result})

    async def _m_setWebhook(self, params: dict[str, Any], files: Any) -> Any:
        self.webhook = dict(params)
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any], files: Any) -> Any:
        self.webhook = None
        return True

    async def post_updates(self, to: str, *, secret: str | None = None) -> list[int]:
        """What Telegram does in webhook mode: POST each pending update to ``to`` (the daemon's
        address for the webhook URL) with the secret token set by setWebhook (or ``secret``); an
        update answered 200 is delivered, any other is kept to be posted again. The statuses."""
        assert self.webhook is not None, "no webhook was set"
        token = secret if secret is not None else str(self.webhook.get("secret_token", ""))
        statuses, kept = [], []
        async with ClientSession() as http:
            for update in list(self.updates):
                async with http.post(
                    to, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": token}
                ) as r:
                    statuses.append(r.status)
                    if r.status != 200:
                        kept.append(update)
        self.updates = kept
        return statuses

    async def _m_getMe(self, params: dict[str, Any], files: Any) -> Any:
        return self.me

    async def _m_getUpdates(self, params: dict[str, Any], files: Any) -> Any:
        offset = int(params.get("offset") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed ones are gone
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while not self.updates and not self._closing and time.monotonic() < deadline:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        return list(self.updates)

    def _sent_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        chat = self._chats.get(chat_id, {"id": chat_id, "type": "private", "first_name": "x"})
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": self.me,
            **content,
        }

    async def _m_sendMessage(self, params: dict[str, Any], files: Any) -> Any:
        return self._sent_message(params, text=str(params["text"]))

    async def _m_sendDocument(self, params: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        name = files["document"][0] if "document" in files else "file"
        return self._sent_message(
            params, document={"file_id": "f1", "file_unique_id": "u1", "file_name": name}
        )


def _words(text: str) -> list[tuple[int, str]]:
    out, i = [], 0
    for word in text.split(" "):
        out.append((i, word))
        i += len(word) + 1
    return out
