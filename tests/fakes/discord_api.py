"""A fake Discord REST API and gateway on 127.0.0.1 for the real discord.py client.

The gateway says HELLO, answers IDENTIFY with READY and GUILD_CREATE (one guild with a text
channel and a thread), acknowledges heartbeats and dispatches the events a test pushes. REST
records every call, answers with Content-Type exactly ``application/json`` (discord.py checks it),
and can answer the next calls of a route with an error such as 429.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.server import FakeServer

BOT_ID = 1000
APP_ID = 1001
GUILD_ID = (1 << 22) + 2000  # a snowflake on shard 1 of 2 ((id >> 22) % 2), DMs on shard 0
CHANNEL_ID = 2100
THREAD_ID = 2200
DM_CHANNEL_ID = 3000


@dataclass
class Call:
    method: str
    path: str
    json: Any
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class FakeDiscord(FakeServer):
    def __init__(self, token: str | None = None) -> None:
        """``token``: when set, REST calls with another token get 401 as from Discord."""
        super().__init__()
        self.token = token
        self.me = user(BOT_ID, "blenderd", bot=True)
        self.calls: list[Call] = []
        self.failures: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self.identified = asyncio.Event()
        self._ids = itertools.count(10_000)
        self._sockets: list[web.WebSocketResponse] = []
        self.shard_of: dict[web.WebSocketResponse, tuple[int, int]] = {}  # socket -> (shard id, count)
        self.recommended_shards = 1  # what GET /gateway/bot recommends
        self._seq = itertools.count(1)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)

    async def stop(self) -> None:
        for ws in self._sockets:
            await ws.close()
        await super().stop()

    # -- what tests do --------------------------------------------------------------------

    def message(self, author: dict[str, Any], content: str, channel_id: int) -> dict[str, Any]:
        """A message object as Discord sends it (no guild fields)."""
        return {
            "id": str(next(self._ids)),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self.me] if f"<@{BOT_ID}>" in content else [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
        }

    async def send_message(
        self,
        author: dict[str, Any],
        content: str,
        *,
        channel_id: int = CHANNEL_ID,
        guild: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        message = self.message(author, content, channel_id)
        if guild:
            message["guild_id"] = str(GUILD_ID)
            message["member"] = {"roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}
        message.update(extra)
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def slash(
        self,
        author: dict[str, Any],
        name: str,
        *,
        channel_id: int = DM_CHANNEL_ID,
        options: dict[str, str] | None = None,
    ) -> str:
        """A slash command as Discord sends it; ``options``: its string arguments by name."""
        interaction_id = str(next(self._ids))
        data: dict[str, Any] = {"id": str(next(self._ids)), "name": name, "type": 1}
        if options:
            data["options"] = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        await self.dispatch(
            "INTERACTION_CREATE",
            {
                "id": interaction_id,
                "application_id": str(APP_ID),
                "type": 2,
                "token": f"tok{interaction_id}",
                "version": 1,
                "channel_id": str(channel_id),
                "channel": {"id": str(channel_id), "type": 1, "recipients": [author]},
                "user": author,
                "data": data,
                "locale": "en-US",
                "app_permissions": "0",
                "entitlements": [],
                "authorizing_integration_owners": {},
                "attachment_size_limit": 8 * 1024 * 1024,
                "context": 1,
            },
        )
        return interaction_id

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event as Discord does: a server's on the shard that has the server
        ((guild_id >> 22) % shard count), everything else (DMs) on shard 0."""
        await self.identified.wait()
        for ws in self._sockets:
            shard, count = self.shard_of.get(ws, (0, 1))
            guild = data.get("guild_id")
            wanted = (int(guild) >> 22) % count if guild is not None else 0
            if not ws.closed and shard == wanted:
                await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": data}))

    def fail_next(self, method: str, path: str, status: int, body: dict[str, Any], times: int = 1) -> None:
        self.failures.setdefault((method, path), []).extend([(status, body)] * times)

    def posted(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path == path]

    # -- gateway ------------------------------------------------------------------------------

    def _guild(self) -> dict[str, Any]:
        channel = {
            "id": str(CHANNEL_ID),
            "type": 0,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "guild_id": str(GUILD_ID),
            "nsfw": False,
            "topic": None,
        }
        thread = {
            "id": str(THREAD_ID),
            "type": 11,
            "name": "a thread",
            "parent_id": str(CHANNEL_ID),
            "guild_id": str(GUILD_ID),
            "owner_id": "1",
            "message_count": 0,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "locked": False,
            },
        }
        return {
            "id": str(GUILD_ID),
            "name": "test guild",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "roles": [
                {
                    "id": str(GUILD_ID),
                    "name": "@everyone",
                    "permissions": "1071698660929",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": 2,
            "large": False,
            "members": [
                {"user": self.me, "roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}
            ],
            "channels": [channel],
            "threads": [thread],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "premium_tier": 0,
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "joined_at": _now(),
        }

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 30000}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            if payload["op"] == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif payload["op"] == 2:
                shard, count = payload["d"].get("shard") or (0, 1)
                self.shard_of[ws] = (shard, count)
                ours = (GUILD_ID >> 22) % count == shard
                ready = {
                    "v": 10,
                    "user": self.me,
                    "guilds": [{"id": str(GUILD_ID), "unavailable": True}] if ours else [],
                    "session_id": f"fake-session-{shard}",
                    "resume_gateway_url": self.gateway,
                    "application": {"id": str(APP_ID), "flags": 0},
                    "shard": [shard, count],
                }
                await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._seq), "d": ready}))
                if ours:
                    await ws.send_str(
                        json.dumps({"op": 0, "t": "GUILD_CREATE", "s": next(self._seq), "d": self._guild()})
                    )
                self.identified.set()
        return ws

    # -- REST ---------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        if self.token is not None and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        body: Any = None
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                elif part.name is not None:
                    files[part.name] = (part.filename or "", bytes(await part.read()))
        self.calls.append(Call(request.method, path, body, files))
        queued = self.failures.get((request.method, path))
        if queued:
            status, error = queued.pop(0)
            # discord.py treats a 429 without a Via header as a Cloudflare ban
            return _json(error, status, {"Via": "1.1 google", "X-RateLimit-Scope": "user"})
        if path == "/users/@me":
            return _json(self.me)
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(APP_ID),
                    "name": "blenderd",
                    "icon": None,
                    "description": "",
                    "summary": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user(1, "owner"),
                    "verify_key": "0" * 64,
                    "flags": 0,
                    "team": None,
                    "rpc_origins": [],
                }
            )
        if path == "/gateway":
            return _json({"url": self.gateway})
        if path == "/gateway/bot":
            limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
            return _json(
                {"url": self.gateway, "shards": self.recommended_shards, "session_start_limit": limit}
            )
        if path.endswith("/typing"):
            return web.Response(status=204)
        if request.method == "PUT" and path == f"/applications/{APP_ID}/commands":
            commands = body if isinstance(body, list) else []
            return _json(
                [
                    {
                        **c,
                        "id": str(next(self._ids)),
                        "application_id": str(APP_ID),
                        "version": "1",
                        "default_member_permissions": None,
                        "dm_permission": True,
                        "nsfw": False,
                    }
                    for c in commands
                ]
            )
        if request.method == "POST" and path.startswith("/channels/") and path.endswith("/messages"):
            channel_id = int(path.split("/")[2])
            return _json(self.message(self.me, (body or {}).get("content") or "", channel_id))
        if request.method == "POST" and path.startswith("/interactions/"):
            return web.Response(status=204)
        return _json({})
