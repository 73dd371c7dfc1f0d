"""The real python-telegram-bot client against a fake Bot API server, with the tiny model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bot import replies
from bot.app import App
from bot.messages import Incoming, Reply
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import tiny_config


class Setup:
    def __init__(self, fake: FakeTelegram, app: App, adapter: TelegramAdapter, config: Any) -> None:
        self.fake, self.app, self.adapter, self.config = fake, app, adapter, config

    async def restart_adapter(self) -> None:
        await self.adapter.stop()
        self.adapter = TelegramAdapter(self.app.core, self.config.telegram, self.fake.token)
        await self.adapter.start()
        await self.adapter.start_intake()


@pytest.fixture
async def tg(tmp_path: Path, blenderbot_dir: Path) -> AsyncIterator[Setup]:
    fake = FakeTelegram()
    await fake.start()
    config = tiny_config(
        tmp_path / "data",
        blenderbot_dir,
        telegram={
            "enabled": True,
            "api_base_url": fake.base_url,
            "command_prefix": "!bb",
            "block_users": ["666"],
        },
    )
    app = App(config)
    await app.start()
    adapter = TelegramAdapter(app.core, config.telegram, fake.token)
    await adapter.start()
    await adapter.start_intake()
    setup = Setup(fake, app, adapter, config)
    yield setup
    await setup.adapter.stop()
    await app.stop()
    await fake.stop()


async def reply_to(fake: FakeTelegram, chat_id: int, count: int = 1) -> list[str]:
    await fake.wait_for(lambda: len(fake.sent("sendMessage", chat_id)) >= count)
    return [str(c.params["text"]) for c in fake.sent("sendMessage", chat_id)]


async def test_dm_gets_a_reply_with_typing_first(tg: Setup) -> None:
    chat = tg.fake.chat(1)
    tg.fake.send(chat, 1, "Hello, how are you?")
    [text] = await reply_to(tg.fake, 1)
    assert text
    typing = tg.fake.sent("sendChatAction", 1)
    assert typing and typing[0].params["action"] == "typing"
    assert typing[0].at <= tg.fake.sent("sendMessage", 1)[0].at
    assert "parse_mode" not in tg.fake.sent("sendMessage", 1)[0].params  # plain text, no Markdown parsing
    commands = tg.fake.sent("setMyCommands")[0].params["commands"]
    assert [c["command"] for c in commands] == ["help", "reset", "forget", "export", "memory"]


async def test_groups_need_a_mention_a_reply_or_the_prefix(tg: Setup) -> None:
    group = tg.fake.chat(-100, "supergroup")
    tg.fake.send(group, 5, "just chatting among humans")
    tg.fake.send(group, 5, "@blenderd_bot what do you think?")
    await reply_to(tg.fake, -100, 1)
    bot_message = tg.fake.sent("sendMessage", -100)[0]
    assert bot_message.params["reply_parameters"]["message_id"] == 2  # threaded under the mention
    mine = {"message_id": 50, "date": 0, "chat": group, "from": tg.fake.me, "text": "earlier bot line"}
    tg.fake.send(group, 6, "replying to the bot", reply_to_message=mine)
    await reply_to(tg.fake, -100, 2)
    tg.fake.send(group, 7, "!bb and with the prefix")
    await reply_to(tg.fake, -100, 3)
    tg.fake.send(group, 8, "another human line")
    sentinel = tg.fake.send(group, 8, "!bb a sentinel: the line before it was read first")
    await reply_to(tg.fake, -100, 4)
    sent = tg.fake.sent("sendMessage", -100)
    assert len(sent) == 4 and sent[3].params["reply_parameters"]["message_id"] == sentinel["message_id"]
    stored = await tg.app.core.memory.export("telegram", "5")
    assert [t["text"] for t in stored["conversations"][0]["turns"] if t["role"] == "user"] == [
        "what do you think?"
    ]


async def test_bots_blocked_users_and_edits_are_ignored(tg: Setup) -> None:
    chat = tg.fake.chat(3)
    tg.fake.send(chat, 3, "I am a bot", is_bot=True)
    tg.fake.send(tg.fake.chat(666), 666, "I am blocked")
    tg.fake.push(
        {
            "edited_message": {
                "message_id": 77,
                "date": 0,
                "edit_date": 1,
                "chat": chat,
                "from": {"id": 3, "is_bot": False, "first_name": "x"},
                "text": "edited",
            }
        }
    )
    tg.fake.send(chat, 3, None, new_chat_members=[{"id": 4, "is_bot": False, "first_name": "y"}])
    sentinel = tg.fake.chat(4)
    tg.fake.send(sentinel, 4, "hello")
    await reply_to(tg.fake, 4)
    assert tg.fake.sent("sendMessage", 3) == [] and tg.fake.sent("sendMessage", 666) == []


async def test_non_text_gets_a_polite_reply(tg: Setup) -> None:
    chat = tg.fake.chat(9)
    tg.fake.send(chat, 9, None, photo=[{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}])
    assert await reply_to(tg.fake, 9) == [replies.TEXT_ONLY]


async def test_commands_and_export_file(tg: Setup) -> None:
    chat = tg.fake.chat(11)
    tg.fake.send(chat, 11, "Remember that I like pizza")
    await reply_to(tg.fake, 11, 1)
    tg.fake.send(chat, 11, "/help")
    assert "/forget" in (await reply_to(tg.fake, 11, 2))[1]
    tg.fake.send(chat, 11, "/export")
    await tg.fake.wait_for(lambda: bool(tg.fake.sent("sendDocument", 11)))
    document = tg.fake.sent("sendDocument", 11)[0]
    name, content = document.files["document"]
    assert name == "blenderd-export.json"
    exported = json.loads(content)
    assert exported["conversations"][0]["turns"][0]["text"] == "Remember that I like pizza"
    tg.fake.send(chat, 11, "/reset")
    assert "start fresh" in (await reply_to(tg.fake, 11, 3))[2]
    tg.fake.send(chat, 11, "/forget")
    assert "deleted everything" in (await reply_to(tg.fake, 11, 4))[3]
    assert (await tg.app.core.memory.export("telegram", "11"))["conversations"] == []


async def test_long_reply_is_split_in_order_at_word_boundaries(tg: Setup) -> None:
    tg.fake.chat(12)
    sentences = [f"Sentence number {i} says something moderately long about the weather." for i in range(150)]
    text = " ".join(sentences)
    assert len(text) > 2 * 4096
    await tg.adapter.deliver_to(Incoming("telegram", "12", "12", "hi", message_id="1"))(Reply(text))
    parts = [str(c.params["text"]) for c in tg.fake.sent("sendMessage", 12)]
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text
    assert all(p.endswith(".") for p in parts)  # cut at sentence boundaries


async def test_429_is_retried_after_the_asked_delay(tg: Setup) -> None:
    chat = tg.fake.chat(13)
    tg.fake.fail_next(
        "sendMessage",
        429,
        {"description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}},
    )
    tg.fake.send(chat, 13, "hello there")
    await reply_to(tg.fake, 13, 2)
    first, second = tg.fake.sent("sendMessage", 13)
    assert second.at - first.at >= 0.9
    assert first.params["text"] == second.params["text"]


async def test_restart_does_not_answer_answered_updates_again(tg: Setup) -> None:
    chat = tg.fake.chat(14)
    tg.fake.send(chat, 14, "first message")
    await reply_to(tg.fake, 14, 1)
    await tg.restart_adapter()
    tg.fake.send(chat, 14, "second message")
    await reply_to(tg.fake, 14, 2)
    tg.fake.send(chat, 14, "a sentinel")  # answered after anything the restart might answer again
    await reply_to(tg.fake, 14, 3)
    assert len(tg.fake.sent("sendMessage", 14)) == 3
