"""The real discord.py client against a fake REST + gateway server, with the tiny model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord import DiscordAdapter
from bot import replies as says
from bot.app import App
from bot.messages import Incoming, Reply
from tests.fakes.discord_api import BOT_ID, CHANNEL_ID, DM_CHANNEL_ID, THREAD_ID, FakeDiscord, user
from tests.helpers import tiny_config

ALICE = user(11, "alice")
BOB = user(12, "bob")


class Setup:
    def __init__(self, fake: FakeDiscord, app: App, adapter: DiscordAdapter) -> None:
        self.fake, self.app, self.adapter = fake, app, adapter


@pytest.fixture
async def dc(tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    fake = FakeDiscord()
    await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway))
    config = tiny_config(
        tmp_path / "data", blenderbot_dir, discord={"enabled": True, "command_prefix": "!bb"}
    )
    app = App(config)
    await app.start()
    adapter = DiscordAdapter(app.core, config.discord, "fake-token")
    await adapter.start()
    await adapter.start_intake()
    yield Setup(fake, app, adapter)
    await adapter.stop()
    await app.stop()
    await fake.stop()


def messages_path(channel_id: int) -> str:
    return f"/channels/{channel_id}/messages"


async def replies(fake: FakeDiscord, channel_id: int, count: int = 1) -> list[str]:
    await fake.wait_for(lambda: len(fake.posted(messages_path(channel_id))) >= count)
    return [str((c.json or {}).get("content")) for c in fake.posted(messages_path(channel_id))]


async def test_dm_reply_typing_and_no_pings(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "Hello, how are you?", channel_id=DM_CHANNEL_ID, guild=False)
    [text] = await replies(dc.fake, DM_CHANNEL_ID)
    assert text
    sent = dc.fake.posted(messages_path(DM_CHANNEL_ID))[0]
    assert sent.json is not None and sent.json["allowed_mentions"] == {"parse": []}
    typing = dc.fake.posted(f"/channels/{DM_CHANNEL_ID}/typing")
    assert typing and typing[0].at <= sent.at
    synced = [c for c in dc.fake.calls if c.method == "PUT" and c.path.endswith("/commands")]
    assert [c["name"] for c in synced[0].json] == ["help", "reset", "forget", "export", "memory"]
    assert [o["name"] for o in synced[0].json[-1]["options"]] == ["action"]  # /memory forget N, off, on


async def test_guild_needs_mention_reply_or_prefix(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "humans talking")
    await dc.fake.send_message(ALICE, f"<@{BOT_ID}> what do you think?")
    await replies(dc.fake, CHANNEL_ID, 1)
    first = dc.fake.posted(messages_path(CHANNEL_ID))[0].json or {}
    assert first["message_reference"]["message_id"]  # answered as a reply to the mention
    mine = dc.fake.message(dc.fake.me, "earlier", CHANNEL_ID)
    await dc.fake.send_message(
        BOB,
        "replying to the bot",
        type=19,
        referenced_message=mine,
        message_reference={"message_id": mine["id"], "channel_id": str(CHANNEL_ID)},
    )
    await replies(dc.fake, CHANNEL_ID, 2)
    await dc.fake.send_message(BOB, "!bb with the prefix")
    await replies(dc.fake, CHANNEL_ID, 3)
    await dc.fake.send_message(BOB, "more humans talking")
    await dc.fake.send_message(BOB, "!bb a sentinel: the line before it was read first")
    await replies(dc.fake, CHANNEL_ID, 4)
    assert len(dc.fake.posted(messages_path(CHANNEL_ID))) == 4
    stored = await dc.app.core.memory.export("discord", "11")
    assert [t["text"] for t in stored["conversations"][0]["turns"] if t["role"] == "user"] == [
        "what do you think?"
    ]


async def test_each_thread_is_its_own_conversation(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, f"<@{BOT_ID}> in the channel")
    await dc.fake.send_message(ALICE, f"<@{BOT_ID}> in the thread", channel_id=THREAD_ID)
    await replies(dc.fake, CHANNEL_ID)
    await replies(dc.fake, THREAD_ID)
    exported = await dc.app.core.memory.export("discord", "11")
    chats = {
        c["chat_id"]: [t["text"] for t in c["turns"] if t["role"] == "user"]
        for c in exported["conversations"]
    }
    assert chats == {str(CHANNEL_ID): ["in the channel"], str(THREAD_ID): ["in the thread"]}


async def test_bots_itself_and_system_messages_are_ignored(dc: Setup) -> None:
    await dc.fake.send_message(user(99, "otherbot", bot=True), "hi", channel_id=DM_CHANNEL_ID, guild=False)
    await dc.fake.send_message(dc.fake.me, "my own line", channel_id=DM_CHANNEL_ID, guild=False)
    await dc.fake.send_message(ALICE, "", type=7)  # member join
    await dc.fake.send_message(BOB, "sentinel", channel_id=DM_CHANNEL_ID + 1, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID + 1)
    assert dc.fake.posted(messages_path(DM_CHANNEL_ID)) == []
    assert dc.fake.posted(messages_path(CHANNEL_ID)) == []


async def test_non_text_gets_a_polite_reply(dc: Setup) -> None:
    attachment = {
        "id": "1",
        "filename": "cat.png",
        "size": 10,
        "url": "http://x/cat.png",
        "proxy_url": "http://x",
    }
    await dc.fake.send_message(ALICE, "", channel_id=DM_CHANNEL_ID, guild=False, attachments=[attachment])
    assert await replies(dc.fake, DM_CHANNEL_ID) == [says.TEXT_ONLY]


async def test_text_commands_in_dms(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "I like pizza", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID, 1)
    await dc.fake.send_message(ALICE, "/help", channel_id=DM_CHANNEL_ID, guild=False)
    assert "/export" in (await replies(dc.fake, DM_CHANNEL_ID, 2))[1]
    await dc.fake.send_message(ALICE, "/export", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID, 3)
    export = dc.fake.posted(messages_path(DM_CHANNEL_ID))[2]
    [(name, content)] = export.files.values()
    assert name == "blenderd-export.json"
    assert json.loads(content)["conversations"][0]["turns"][0]["text"] == "I like pizza"


async def test_slash_commands(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "remember me", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID)
    for name in ("help", "export", "reset", "forget"):
        interaction = await dc.fake.slash(ALICE, name)
        path = f"/interactions/{interaction}/tok{interaction}/callback"
        await dc.fake.wait_for(lambda path=path: bool(dc.fake.posted(path)))  # type: ignore[misc]
        call = dc.fake.posted(path)[0]
        assert call.json is not None and call.json["type"] == 4
        assert call.json["data"]["flags"] == 64  # ephemeral: only the person sees it
        if name == "export":
            [(filename, content)] = call.files.values()
            assert filename == "blenderd-export.json"
            assert json.loads(content)["conversations"][0]["turns"][0]["text"] == "remember me"
        if name == "forget":
            assert "deleted everything" in call.json["data"]["content"]
    assert (await dc.app.core.memory.export("discord", "11"))["conversations"] == []


async def test_slash_memory_takes_its_action(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "my name is Ada", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID)
    answers = []
    for options in (None, {"action": "forget 1"}, {"action": "off"}):
        interaction = await dc.fake.slash(ALICE, "memory", options=options)
        path = f"/interactions/{interaction}/tok{interaction}/callback"
        await dc.fake.wait_for(lambda path=path: bool(dc.fake.posted(path)))  # type: ignore[misc]
        call = dc.fake.posted(path)[0]
        assert call.json is not None and call.json["data"]["flags"] == 64
        answers.append(call.json["data"]["content"])
    assert "1. my name is Ada" in answers[0]
    assert answers[1] == "Done, I forgot: my name is Ada"
    assert "won't remember anything new" in answers[2]
    assert not await dc.app.core.memory.longterm.remembers("discord", "11")


async def test_long_reply_split_in_order(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "hi", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID)
    message = dc.adapter.client._connection._messages[-1]  # type: ignore[index]
    words = " ".join(f"word{i}" for i in range(900))
    await dc.adapter._send(message.channel, Reply(words), reference=None)
    parts = (await replies(dc.fake, DM_CHANNEL_ID, 2))[1:]
    assert len(parts) >= 3 and all(len(p) <= 2000 for p in parts)
    assert " ".join(parts) == words  # in order, never cut inside a word


async def test_429_then_success(dc: Setup) -> None:
    dc.fake.fail_next(
        "POST",
        messages_path(DM_CHANNEL_ID),
        429,
        {"message": "You are being rate limited.", "retry_after": 0.5, "global": False},
    )
    await dc.fake.send_message(ALICE, "hello there", channel_id=DM_CHANNEL_ID, guild=False)
    await dc.fake.wait_for(lambda: len(dc.fake.posted(messages_path(DM_CHANNEL_ID))) >= 2)
    first, second = dc.fake.posted(messages_path(DM_CHANNEL_ID))
    assert second.at - first.at >= 0.4
    assert (first.json or {}).get("content") == (second.json or {}).get("content")


async def test_both_platforms_at_once_through_the_daemon(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.registry import Registry
    from bot.daemon import Daemon
    from tests.fakes.telegram_api import FakeTelegram

    fake_dc, fake_tg = FakeDiscord(), FakeTelegram()
    await fake_dc.start()
    await fake_tg.start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake_dc.api_base)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake_dc.gateway))
    monkeypatch.setenv("DISCORD_TOKEN", "fake-token")
    (tmp_path / "tg-token").write_text(fake_tg.token + "\n")
    monkeypatch.setenv("TELEGRAM_TOKEN_FILE", str(tmp_path / "tg-token"))
    config = tiny_config(
        tmp_path / "data",
        blenderbot_dir,
        discord={"enabled": True},
        telegram={"enabled": True, "api_base_url": fake_tg.base_url},
    )
    daemon = Daemon(App(config), Registry(config))
    serving = asyncio.create_task(daemon.serve())
    await fake_tg.wait_for(lambda: all(a.connected for a in daemon.adapters) and len(daemon.adapters) == 2)
    await fake_dc.send_message(ALICE, "hello from discord", channel_id=DM_CHANNEL_ID, guild=False)
    fake_tg.send(fake_tg.chat(21), 21, "hello from telegram")
    await replies(fake_dc, DM_CHANNEL_ID)
    await fake_tg.wait_for(lambda: bool(fake_tg.sent("sendMessage", 21)))
    daemon.should_exit.set()
    await asyncio.wait_for(serving, 30)
    assert all(not a.connected for a in daemon.adapters)
    await fake_dc.stop()
    await fake_tg.stop()


def test_enabled_platform_without_token_is_a_clear_error(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.config import ConfigError, platform_tokens

    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv("DISCORD_TOKEN_FILE", raising=False)
    config = tiny_config(tmp_path, blenderbot_dir, discord={"enabled": True})
    with pytest.raises(ConfigError, match="discord is enabled in the config but DISCORD_TOKEN is not set"):
        platform_tokens(config)


async def test_hostile_mentions_never_ping(dc: Setup) -> None:
    await dc.fake.send_message(ALICE, "@everyone @here <@&123> hi", channel_id=DM_CHANNEL_ID, guild=False)
    await replies(dc.fake, DM_CHANNEL_ID)
    dm = Incoming("discord", str(DM_CHANNEL_ID), "11", "hi", message_id="1", is_private=True)
    await dc.adapter.deliver_to(dm)(Reply("@everyone <@&123> look!"))
    sent = dc.fake.posted(messages_path(DM_CHANNEL_ID))
    assert len(sent) == 2 and all((c.json or {}).get("allowed_mentions") == {"parse": []} for c in sent)
