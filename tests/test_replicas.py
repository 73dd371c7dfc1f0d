"""Several daemons on one PostgreSQL (Telegram webhooks behind a load balancer), started with
`python -m bot run` from config files: a conversation is answered one message at a time whichever
replica took each message, and a dead daemon's unanswered messages are recovered by one other."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import asyncpg

from tests.cli import closed_port, offline_env, start, stop, tiny, wait_for_log, wait_healthy, write_config
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "4242:REPLICA-TOKEN-abcdefgh"
SECRET = "replica-secret-0123456789"
SLOW = {"num_beams": 100, "min_length": 60, "max_length": 60}  # a reply takes about 1 s or more


class Replica:
    def __init__(self, folder: Path, process: asyncio.subprocess.Process, port: int) -> None:
        self.folder, self.process, self.port = folder, process, port
        self.log = folder / "daemon.log"
        self.hook = f"http://127.0.0.1:{port}/telegram/webhook"


async def replica(
    tmp_path: Path,
    name: str,
    checkpoint: Path,
    fake: FakeTelegram,
    database: str,
    *,
    wait: bool = True,
    **sections: Any,
) -> Replica:
    port = closed_port()
    folder = tmp_path / name
    raw = tiny(
        folder,
        checkpoint,
        telegram={
            "enabled": True,
            "api_base_url": fake.base_url,
            "mode": "webhook",
            "webhook_url": "https://bot.example.test/telegram/webhook",
        },
        http={"port": port},
        database={"url": database},
        model={"generation": SLOW},
        **sections,
    )
    env = offline_env(TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET=SECRET)
    config = write_config(folder, raw)
    process = await start("--config", str(config), "run", cwd=folder, log=folder / "daemon.log", env=env)
    r = Replica(folder, process, port)
    if wait:
        await wait_healthy(port, process, r.log)
    return r


def replies(fake: FakeTelegram, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in fake.sent("sendMessage", chat)]


async def turns(database: str, chat: int) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch(
            "SELECT t.role, t.text FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "WHERE c.chat_id = $1 ORDER BY t.id",
            str(chat),
        )
    finally:
        await connection.close()
    return [(r["role"], r["text"]) for r in rows]


async def test_one_conversation_is_answered_in_order_across_replicas(
    tmp_path: Path, heavy_blenderbot_dir: Path, fresh_postgres: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    replicas: list[Replica] = []
    try:
        # Started together on an empty database: they migrate it one at a time.
        replicas = [
            await replica(tmp_path, n, heavy_blenderbot_dir, fake, fresh_postgres, wait=False) for n in "ab"
        ]
        for r in replicas:
            await wait_healthy(r.port, r.process, r.log)
        chat = fake.chat(7)
        fake.send(chat, 7, "the first message, to replica a")
        assert await fake.post_updates(replicas[0].hook) == [200]
        fake.send(chat, 7, "the second message, to replica b")
        assert await fake.post_updates(replicas[1].hook) == [200]  # while a is still generating
        await fake.wait_for(lambda: len(replies(fake, 7)) == 2, timeout=180)
        for r in replicas:
            assert await stop(r.process) == 0
    finally:
        for r in replicas:
            await stop(r.process)
        await fake.stop()
    roles = [role for role, _ in await turns(fresh_postgres, 7)]
    # b waited for a's reply before it read the history: without the lock it would have stored
    # its user turn while a was generating (user, user, bot, bot).
    assert roles == ["user", "bot", "user", "bot"], roles
    for r in replicas:
        assert "Traceback" not in r.log.read_text()


async def test_a_dead_replicas_messages_are_recovered_by_one_other_and_a_live_ones_are_not(
    tmp_path: Path, heavy_blenderbot_dir: Path, fresh_postgres: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    started: list[Replica] = []
    try:
        a = await replica(tmp_path, "a", heavy_blenderbot_dir, fake, fresh_postgres)
        b = await replica(tmp_path, "b", heavy_blenderbot_dir, fake, fresh_postgres)
        started += [a, b]
        fake.send(fake.chat(31), 31, "a message that replica a never answers")
        assert await fake.post_updates(a.hook) == [200]
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 31)), timeout=60)
        a.process.send_signal(signal.SIGKILL)  # mid-generation: the message stays pending, a's
        await a.process.wait()
        assert replies(fake, 31) == []

        fake.fail_next("sendMessage", 500, {"description": "Internal Server Error"}, times=5)
        fake.send(fake.chat(32), 32, "a message replica b cannot deliver")
        assert await fake.post_updates(b.hook) == [200]
        await wait_for_log(b.log, "could not be delivered after retries", b.process, timeout=180)

        c = await replica(tmp_path, "c", heavy_blenderbot_dir, fake, fresh_postgres)  # recovers at start
        started.append(c)
        await fake.wait_for(lambda: bool(replies(fake, 31)), timeout=180)
        fake.send(fake.chat(33), 33, "a new message to replica c")
        assert await fake.post_updates(c.hook) == [200]
        await fake.wait_for(lambda: bool(replies(fake, 33)), timeout=180)
        assert len(replies(fake, 31)) == 1  # a's message: recovered by c, once
        # b's message: b is alive, so it stays b's: only b's five failed attempts were ever sent
        assert len(replies(fake, 32)) == 5
        for r in (b, c):
            assert await stop(r.process) == 0
    finally:
        for r in started:
            await stop(r.process)
        await fake.stop()
    assert "recovering 1 unanswered telegram messages" in c.log.read_text()
    assert "recovering" not in b.log.read_text()


async def test_a_daemon_answers_an_earlier_message_another_accepted_first(
    tmp_path: Path, blenderbot_dir: Path, fresh_postgres: str
) -> None:
    """Two daemons (two Apps on one database): b gets the conversation's lock first, for a message
    accepted after one that a accepted; b answers a's first, then its own, and a has nothing left."""
    from bot.app import App
    from bot.messages import Incoming, Reply
    from tests.helpers import tiny_config

    apps = [App(tiny_config(tmp_path / n, blenderbot_dir, database={"url": fresh_postgres})) for n in "ab"]
    for app in apps:
        await app.start()
    sent: list[tuple[str | None, str]] = []

    def deliver_to(message: Incoming) -> Any:
        async def deliver(reply: Reply) -> None:
            sent.append((message.message_id, reply.text))

        return deliver

    try:
        a, b = (app.core for app in apps)
        for core in (a, b):
            core.attach("telegram", deliver_to)
        first = Incoming("telegram", "7", "7", "the first message", message_id="1")
        second = Incoming("telegram", "7", "7", "the second message", message_id="2")
        _, first_id = await a.accept(first)
        _, second_id = await b.accept(second)
        assert first_id is not None and second_id is not None and first_id < second_id
        assert await b.handle(second, deliver=deliver_to(second), accepted=second_id) is not None
        assert await a.handle(first, deliver=deliver_to(first), accepted=first_id) is None  # done already
    finally:
        for app in apps:
            await app.stop()
    assert [message_id for message_id, _ in sent] == ["1", "2"]
    stored = await turns(fresh_postgres, 7)
    assert [role for role, _ in stored] == ["user", "bot", "user", "bot"]
    assert [text for role, text in stored if role == "user"] == ["the first message", "the second message"]
