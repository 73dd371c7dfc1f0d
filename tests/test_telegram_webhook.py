"""telegram.mode: webhook, through `python -m bot run`: Telegram posts updates to the daemon's HTTP
server with its secret token; an update is stored before the 200; replicas answer each once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli import (
    closed_port,
    offline_env,
    one_error,
    run,
    start,
    stop,
    tiny,
    wait_healthy,
    write_config,
)
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "4242:WEBHOOK-TOKEN-abcdefgh"
SECRET = "s3cret_webhook-token-0123456789"
PUBLIC = "https://bot.example.test/tg/updates"


def webhook_config(folder: Path, checkpoint: Path, fake: FakeTelegram, port: int, **sections: Any) -> Path:
    raw = tiny(
        folder,
        checkpoint,
        telegram={"enabled": True, "api_base_url": fake.base_url, "mode": "webhook", "webhook_url": PUBLIC},
        http={"port": port},
        **sections,
    )
    return write_config(folder, raw)


def replies(fake: FakeTelegram, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in fake.sent("sendMessage", chat)]


async def test_updates_posted_with_the_secret_are_answered_once(tmp_path: Path, blenderbot_dir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    config = webhook_config(tmp_path, blenderbot_dir, fake, port)
    log = tmp_path / "daemon.log"
    env = offline_env(TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET=SECRET)
    daemon = await start("--config", str(config), "run", cwd=tmp_path, log=log, env=env)
    hook = f"http://127.0.0.1:{port}/tg/updates"  # where the public URL's proxy forwards to
    try:
        await wait_healthy(port, daemon, log)
        assert fake.webhook is not None
        assert fake.webhook["url"] == PUBLIC and fake.webhook["secret_token"] == SECRET
        assert fake.webhook["allowed_updates"] == ["message"]

        chat = fake.chat(5)
        first = fake.send(chat, 5, "hello there")
        assert await fake.post_updates(hook, secret="not-the-secret") == [401]
        assert await fake.post_updates(hook, secret="") == [401]
        assert await fake.post_updates(hook) == [200]
        await fake.wait_for(lambda: len(replies(fake, 5)) == 1, timeout=60)

        fake.push({"message": first})  # Telegram posts it again (its 200 was lost on the way)
        fake.send(chat, 5, "and a second message")
        assert await fake.post_updates(hook) == [200, 200]
        await fake.wait_for(lambda: len(replies(fake, 5)) >= 2, timeout=60)
        # The redelivery was taken before the second message, in the same conversation's line: had
        # it been answered, its reply would have come before the second one.
        assert len(replies(fake, 5)) == 2
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()
    text = log.read_text()
    assert "webhook at https://bot.example.test/tg/updates" in text
    assert "without the right secret token was refused" in text
    assert "Traceback" not in text and "getUpdates" not in text
    assert SECRET not in text and "WEBHOOK-TOKEN" not in text


async def test_two_replicas_on_one_postgresql_answer_an_update_once(
    tmp_path: Path, blenderbot_dir: Path, fresh_postgres: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    daemons, hooks = [], []
    try:
        for name in ("a", "b"):
            port = closed_port()
            folder = tmp_path / name
            config = webhook_config(folder, blenderbot_dir, fake, port, database={"url": fresh_postgres})
            env = offline_env(TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET=SECRET)
            log = folder / "daemon.log"
            daemons.append((await start("--config", str(config), "run", cwd=folder, log=log, env=env), log))
            hooks.append((f"http://127.0.0.1:{port}/tg/updates", port))
        for (daemon, log), (_, port) in zip(daemons, hooks, strict=True):
            await wait_healthy(port, daemon, log)
        chat = fake.chat(7)
        for i in range(3):  # each update reaches both replicas (a load balancer retrying, say)
            update = fake.send(chat, 7, f"message number {i} for the replicas")
            assert await fake.post_updates(hooks[0][0]) == [200]
            fake.push({"message": update})
            assert await fake.post_updates(hooks[1][0]) == [200]
        sentinel = fake.send(chat, 7, "the last one")
        assert await fake.post_updates(hooks[1][0]) == [200]
        await fake.wait_for(lambda: len(replies(fake, 7)) >= 4, timeout=90)
        assert sentinel["text"] == "the last one"
        for daemon, _ in daemons:
            assert await stop(daemon) == 0
    finally:
        for daemon, _ in daemons:
            await stop(daemon)
        await fake.stop()
    assert len(replies(fake, 7)) == 4  # 3 messages posted twice each and the last one: 4 replies
    for _, log in daemons:
        text = log.read_text()
        assert "Traceback" not in text and SECRET not in text


def test_webhook_mode_needs_its_url_and_secret(tmp_path: Path, blenderbot_dir: Path) -> None:
    base = {"enabled": True, "api_base_url": "http://127.0.0.1:9/bot", "mode": "webhook"}
    no_url = write_config(tmp_path / "a", tiny(tmp_path / "a", blenderbot_dir, telegram=base))
    line = one_error(run("--config", str(no_url), "run", cwd=tmp_path, env=offline_env(TELEGRAM_TOKEN=TOKEN)))
    assert "telegram.webhook_url is not set" in line and "https" in line

    raw = tiny(tmp_path / "b", blenderbot_dir, telegram={**base, "webhook_url": PUBLIC})
    no_secret = write_config(tmp_path / "b", raw)
    line = one_error(
        run("--config", str(no_secret), "run", cwd=tmp_path, env=offline_env(TELEGRAM_TOKEN=TOKEN))
    )
    assert "TELEGRAM_WEBHOOK_SECRET is not set" in line and "openssl rand -hex 32" in line
    env = offline_env(TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET="has spaces!")
    line = one_error(run("--config", str(no_secret), "run", cwd=tmp_path, env=env))
    assert "TELEGRAM_WEBHOOK_SECRET is not valid" in line and "has spaces" not in line

    plain = tiny(
        tmp_path / "c", blenderbot_dir, telegram={**base, "webhook_url": "http://bot.example.test/x"}
    )
    line = one_error(run("--config", str(write_config(tmp_path / "c", plain)), "run", cwd=tmp_path))
    assert "telegram.webhook_url" in line and "public https://" in line
