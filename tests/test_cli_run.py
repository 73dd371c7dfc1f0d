"""`python -m bot run` as a user starts it: from a config file, without network, against fake
platform servers on 127.0.0.1 (the real client libraries on the daemon's side)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.cli import (
    SHIM,
    closed_port,
    exit_code,
    health,
    offline_env,
    start,
    stop,
    tiny,
    wait_for_log,
    wait_healthy,
    with_telegram,
    write_config,
)
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "4242:RIGHT-TOKEN-abcdefgh"
WEB_TOKEN = "web-token-0123456789"


async def test_web_chat_alone_is_run_and_served(tmp_path: Path, blenderbot_dir: Path) -> None:
    port = closed_port()
    raw = tiny(
        tmp_path, blenderbot_dir, web={"enabled": True}, http={"port": port}, logging={"level": "DEBUG"}
    )
    log = tmp_path / "daemon.log"
    env = offline_env(BLENDERD_WEB_TOKEN=WEB_TOKEN)
    daemon = await start("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, log=log, env=env)
    try:
        await wait_healthy(port, daemon, log)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/", allow_redirects=False) as response:
                assert response.status == 302 and response.headers["Location"] == "/chat"
            async with http.get(base + "/chat") as response:
                assert response.status == 401  # the token is required
            async with http.get(base + f"/chat?token={WEB_TOKEN}") as response:
                assert response.status == 200 and "<html" in (await response.text()).lower()
            async with http.post(
                base + "/chat/api/message", json={"text": "Hello, how are you?"}
            ) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["reply"]
            async with http.get(base + "/chat/api/history") as response:
                assert [t["role"] for t in (await response.json())["turns"]] == ["user", "bot"]
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
    text = log.read_text()
    assert WEB_TOKEN not in text and "web chat on /chat (token required)" in text
    assert "collection resumed; the" in text  # paused while the daemon started (bot.collection)


async def test_a_wrong_telegram_token_is_one_line_and_never_printed(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    wrong = "4242:WRONG-TOKEN-zyxwvut"
    raw = tiny(tmp_path, blenderbot_dir, telegram={"enabled": True, "api_base_url": fake.base_url})
    log = tmp_path / "daemon.log"
    env = offline_env(TELEGRAM_TOKEN=wrong)
    try:
        code = await exit_code(raw, tmp_path, log, env)
    finally:
        await fake.stop()
    line = rejected(log, code, secret="WRONG-TOKEN")
    assert "telegram rejected TELEGRAM_TOKEN" in line and "@BotFather" in line
    assert fake.unauthorized == ["getMe"]  # a rejected token is not retried


def rejected(log: Path, code: int, *, secret: str) -> str:
    """The one ERROR line of a start that a platform refused; the token appears nowhere."""
    text = log.read_text()
    assert code == 2, text[-3000:]
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text[-3000:]
    assert "Traceback" not in text and secret not in text
    return errors[0]


def discord_env(fake_api: str, fake_gateway: str, token: str) -> dict[str, str]:
    return offline_env(
        DISCORD_TOKEN=token,
        PYTHONPATH=str(SHIM),
        BLENDERD_TEST_DISCORD_API=fake_api,
        BLENDERD_TEST_DISCORD_GATEWAY=fake_gateway,
    )


async def test_a_wrong_discord_token_is_one_line_and_never_printed(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    fake = FakeDiscord(token="right-discord-token")
    await fake.start()
    raw = tiny(tmp_path, blenderbot_dir, discord={"enabled": True})
    log = tmp_path / "daemon.log"
    env = discord_env(fake.api_base, fake.gateway, "wrong-discord-token-1234")
    try:
        code = await exit_code(raw, tmp_path, log, env)
    finally:
        await fake.stop()
    assert "discord rejected DISCORD_TOKEN" in rejected(log, code, secret="wrong-discord-token")
    assert "Unclosed" not in log.read_text()


async def test_unreachable_platforms_at_start_are_retried_until_they_answer(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    tg_port, http_port = closed_port(), closed_port()
    raw = tiny(
        tmp_path,
        blenderbot_dir,
        telegram={"enabled": True, "api_base_url": f"http://127.0.0.1:{tg_port}/bot"},
        discord={"enabled": True},
        http={"port": http_port},
    )
    dead = f"http://127.0.0.1:{closed_port()}"
    env = discord_env(dead + "/api/v10", dead.replace("http", "ws") + "/gateway", "discord-token-xyz")
    env["TELEGRAM_TOKEN"] = TOKEN
    log = tmp_path / "daemon.log"
    daemon = await start("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, log=log, env=env)
    fake = FakeTelegram(token=TOKEN)
    try:
        await wait_for_log(log, "(attempt 2; retrying in 2 s)", daemon, timeout=120)
        answer = await health(http_port)
        assert answer is not None and answer[0] == 503
        assert answer[1]["platforms"] == {"telegram": False, "discord": False}
        await fake.start(port=tg_port)  # the network is back for telegram
        fake.send(fake.chat(5), 5, "are you there?")
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", 5)), timeout=60)
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()
    text = log.read_text()
    assert "telegram cannot be reached at" in text and "check the network" in text
    assert "discord cannot be reached" in text and "discord.proxy" in text
    assert "Traceback" not in text and "Unclosed" not in text
    assert "RIGHT-TOKEN" not in text and "discord-token-xyz" not in text


async def test_shutdown_keeps_one_budget_and_leaves_the_message_for_the_restart(
    tmp_path: Path, heavy_blenderbot_dir: Path
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = tiny(
        tmp_path,
        heavy_blenderbot_dir,
        model={"generation": {"num_beams": 800, "min_length": 64, "max_length": 64}},  # 6 s and more
        telegram={"enabled": True, "api_base_url": fake.base_url},
        http={"port": port},
        shutdown={"grace_seconds": 2},
    )
    log = tmp_path / "daemon.log"
    env = offline_env(TELEGRAM_TOKEN=TOKEN)
    daemon = await start("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, log=log, env=env)
    try:
        await wait_healthy(port, daemon, log)
        fake.send(fake.chat(3), 3, "a reply that takes far longer than the budget")
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 3)), timeout=60)
        await asyncio.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = await asyncio.wait_for(daemon.wait(), 30)
        elapsed = time.monotonic() - stopped
    finally:
        await stop(daemon)
        await fake.stop()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert elapsed <= 2 + 2, f"exit took {elapsed:.1f} s for a 2 s budget"
    assert "cancelling them" in text and "Traceback" not in text
    assert fake.sent("sendMessage", 3) == []
    db = sqlite3.connect(tmp_path / "data" / "blenderd.sqlite3")
    assert db.execute("SELECT status FROM inbox").fetchall() == [("pending",)]  # answered after a restart
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def run_group_chat(tmp_path: Path, checkpoint: Path, *, message_text: bool) -> tuple[FakeTelegram, str]:
    """A DEBUG daemon in a group chat: mentions of other bots, of this bot, and a DM, each with a marker."""
    fake = FakeTelegram(token=TOKEN, username="blenderd_bot")
    await fake.start()
    port = closed_port()
    raw = with_telegram(
        tmp_path, checkpoint, fake.base_url, port, logging={"level": "DEBUG", "message_text": message_text}
    )
    log = tmp_path / "daemon.log"
    daemon = await start(
        "--config",
        str(write_config(tmp_path, raw)),
        "run",
        cwd=tmp_path,
        log=log,
        env=offline_env(TELEGRAM_TOKEN=TOKEN),
    )
    try:
        await wait_healthy(port, daemon, log)
        group = fake.chat(-100, "supergroup")
        fake.send(group, 7, "@blenderd_bot_helper please ignore this MARKERONE")
        fake.send(group, 7, "/help@blenderd_bot_helper")
        fake.send(group, 7, "@Blenderd_Bot hello there MARKERTWO")
        fake.send(fake.chat(8), 8, "a private MARKERTHREE message")
        await fake.wait_for(
            lambda: bool(fake.sent("sendMessage", -100)) and bool(fake.sent("sendMessage", 8)), 60
        )
        await asyncio.sleep(1.0)  # time for a wrong answer to the other bot's messages
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()
    return fake, log.read_text()


async def test_mentions_by_entity_and_no_message_text_in_debug_logs(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    fake, text = await run_group_chat(tmp_path, blenderbot_dir, message_text=False)
    assert len(fake.sent("sendMessage", -100)) == 1  # only "@Blenderd_Bot hello there"
    assert " DEBUG " in text and "aiosqlite" not in text
    for marker in ("MARKERONE", "MARKERTWO", "MARKERTHREE"):
        assert marker not in text
    assert "RIGHT-TOKEN" not in text


async def test_message_text_is_logged_only_when_configured(tmp_path: Path, blenderbot_dir: Path) -> None:
    _, text = await run_group_chat(tmp_path, blenderbot_dir, message_text=True)
    assert "MARKERTHREE" in text  # the scan above can see text when it is there
    inputs = [line for line in text.splitlines() if "model input for telegram/8" in line]
    assert len(inputs) == 1 and "a private MARKERTHREE message</s>" in inputs[0]  # the decoded model input
    assert "RIGHT-TOKEN" not in text


async def test_a_stop_while_still_connecting_is_clean(tmp_path: Path, blenderbot_dir: Path) -> None:
    port = closed_port()
    raw = with_telegram(tmp_path, blenderbot_dir, f"http://127.0.0.1:{closed_port()}/bot", port)
    log = tmp_path / "daemon.log"
    env = offline_env(TELEGRAM_TOKEN=TOKEN)
    daemon = await start("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, log=log, env=env)
    try:
        await wait_for_log(log, "(attempt 1; retrying in 1 s)", daemon, timeout=120)
        assert await stop(daemon, timeout=30) == 0
    finally:
        await stop(daemon)
    text = log.read_text()
    assert "Traceback" not in text and "Unclosed" not in text and "stopped" in text
