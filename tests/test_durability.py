"""No message lost or answered twice: the inbox, redeliveries, failed deliveries and recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot import replies
from bot.app import App
from bot.core import ChatCore
from bot.messages import Incoming, Reply
from memory import ConversationKey
from memory.schema import InboxMessage
from tests.helpers import tiny_config


@pytest.fixture
async def app(tmp_path: Path, blenderbot_dir: Path) -> AsyncIterator[App]:
    a = App(tiny_config(tmp_path / "data", blenderbot_dir))
    await a.start()
    yield a
    await a.stop()


def message(text: str, message_id: str, *, user: str = "u", chat: str = "c") -> Incoming:
    return Incoming("telegram", chat, user, text, message_id=message_id)


class Outbox:
    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[Reply] = []
        self.fail = fail

    async def __call__(self, reply: Reply) -> None:
        if self.fail:
            raise ConnectionError("the platform is unreachable")
        self.sent.append(reply)


async def test_a_redelivered_message_is_not_answered_twice(app: App) -> None:
    core = app.core
    out = Outbox()
    assert await core.handle(message("hello there", "41"), deliver=out) is not None
    assert await core.handle(message("hello there", "41"), deliver=out) is None
    assert len(out.sent) == 1
    assert app.worker.stats.requests == 1
    turns = await core.memory.context_turns(ConversationKey("telegram", "c", "u"))
    assert [t.role for t in turns] == ["user", "bot"]


async def test_a_failed_delivery_stays_pending_and_is_recovered_exactly_once(app: App) -> None:
    core: ChatCore = app.core
    with pytest.raises(ConnectionError):
        await core.handle(message("are you there?", "7"), deliver=Outbox(fail=True))
    [pending] = await core.memory.pending("telegram")
    assert (pending.message_id, pending.text) == ("7", "are you there?")
    out = Outbox()
    delivered_to: list[Incoming] = []

    def deliver_to(recovered: Incoming) -> Outbox:
        delivered_to.append(recovered)
        return out

    assert await core.recover("telegram", deliver_to, missed_after=3600) == 1
    assert delivered_to == [message("are you there?", "7")]  # the adapter is told which message, as it came
    assert len(out.sent) == 1 and out.sent[0].text
    assert await core.recover("telegram", deliver_to, missed_after=3600) == 0
    assert await core.memory.pending("telegram") == []
    turns = await core.memory.context_turns(ConversationKey("telegram", "c", "u"))
    assert (turns[0].role, turns[0].text) == ("user", "are you there?")
    assert [t.role for t in turns] == ["user", "bot"]  # the crashed attempt's turns were not kept twice
    assert await core.handle(message("are you there?", "7"), deliver=out) is None  # a late redelivery


async def test_an_old_unanswered_message_gets_a_missed_note(app: App) -> None:
    core = app.core
    with pytest.raises(ConnectionError):
        await core.handle(message("hello from yesterday", "8"), deliver=Outbox(fail=True))
    async with core.memory.engine.begin() as conn:
        await conn.execute(update(InboxMessage).values(received_at=datetime.now(UTC) - timedelta(days=1)))
    out = Outbox()
    assert await core.recover("telegram", lambda row: out, missed_after=3600) == 1
    [note] = out.sent
    assert note.text.startswith(replies.MISSED.split("{when}")[0])
    assert app.worker.stats.requests == 1  # only the attempt that crashed reached the model


async def test_export_and_forget_never_touch_another_person(app: App) -> None:
    core = app.core
    out = Outbox()
    await core.handle(message("alice speaking", "1", user="alice", chat="group"), deliver=out)
    await core.handle(message("bob speaking", "2", user="bob", chat="group"), deliver=out)
    export = await core.handle(Incoming("telegram", "group", "alice", "/export", message_id="3"))
    assert export is not None and export.attachment is not None
    assert b"bob speaking" not in export.attachment.content and b"alice speaking" in export.attachment.content
    await core.handle(Incoming("telegram", "group", "alice", "/forget", message_id="4"))
    assert (await core.memory.export("telegram", "alice"))["conversations"] == []
    bob = await core.memory.context_turns(ConversationKey("telegram", "group", "bob"))
    assert [t.text for t in bob if t.role == "user"] == ["bob speaking"]
