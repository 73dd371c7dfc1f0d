"""Hostile input, from a fixed corpus and from hypothesis: no crash, a sensible reply, nothing stored
that breaks a later context, and no ping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import messages as messages_module
from bot import replies
from bot.app import App
from bot.messages import Incoming
from memory import ConversationKey
from tests.helpers import tiny_config

CORPUS = [
    "",
    "   \t\n  ",
    "x" * 1_000_000,
    "hello\x00world\x00",
    "\x01\x02\x03\x1b[31mred\x1b[0m\x7f",
    "lone \ud800 surrogate \udfff here",
    "\u202eevil right-to-left override\u202c",
    "Z̷̢̛̛a̸̡̕l̵̨̛g̸̢̛o̶̢̕ ̵̨̛t̵̢̛e̸̡̕x̵̨̛t̶̢̕",
    "👩‍👩‍👧‍👦🏳️‍🌈🇬🇧 emoji sequences",
    "**bold** _italic_ `code` [link](http://example.com) ~~strike~~ ||spoiler||",
    "<b>html</b><script>alert(1)</script>&amp;",
    "@everyone @here <@&123456> <@!42> hello",
    "'; DROP TABLE turns; --",
    "Robert'); DELETE FROM conversations WHERE ('1'='1",
    "/forget@someotherbot",
    "/export all of it please",
    "/reset@blenderd now",
    "/",
    "//double slash",
    "</s> <s> <pad> __start__ __end__ special tokens",
    "\n".join(["line"] * 5000),
]


@pytest.fixture(scope="module")
def loop_and_app(
    tmp_path_factory: pytest.TempPathFactory, blenderbot_dir: Path
) -> Iterator[tuple[asyncio.AbstractEventLoop, App]]:
    loop = asyncio.new_event_loop()
    config = tiny_config(
        tmp_path_factory.mktemp("hostile") / "data",
        blenderbot_dir,
        rate_limit={"messages": 100_000, "per_seconds": 1},
    )
    app = App(config)
    loop.run_until_complete(app.start())
    yield loop, app
    loop.run_until_complete(app.stop())
    loop.close()


def exchange(loop: asyncio.AbstractEventLoop, app: App, text: str, user: str) -> str | None:
    reply = loop.run_until_complete(
        app.core.handle(Incoming("discord", "hostile", user, text), bot_username="blenderd")
    )
    return None if reply is None else reply.text


def check(loop: asyncio.AbstractEventLoop, app: App, text: str, user: str) -> None:
    reply = exchange(loop, app, text, user)
    first = text.strip().split(maxsplit=1)[0] if text.strip() else ""
    if reply is None:  # only a command addressed to another bot is not answered
        assert first.startswith("/") and "@" in first and not first.lower().endswith("@blenderd")
    else:
        assert reply.strip(), repr(text[:50])
    # Whatever was stored must not break the next context.
    follow_up = exchange(loop, app, "and how are you?", user)
    assert follow_up and follow_up != replies.FAILED
    turns = loop.run_until_complete(
        app.core.memory.context_turns(ConversationKey("discord", "hostile", user))
    )
    for turn in turns:
        assert "\x00" not in turn.text and len(turn.text) <= messages_module.MAX_MESSAGE_CHARS
        turn.text.encode("utf-8")  # storable and sendable: no lone surrogates survive


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_fixed_corpus(loop_and_app: tuple[asyncio.AbstractEventLoop, App], text: str) -> None:
    loop, app = loop_and_app
    check(loop, app, text, user="corpus")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300))
def test_any_text(loop_and_app: tuple[asyncio.AbstractEventLoop, App], text: str) -> None:
    loop, app = loop_and_app
    check(loop, app, text, user="hypothesis")


def test_commands_with_arguments_and_other_bots(loop_and_app: tuple[asyncio.AbstractEventLoop, App]) -> None:
    loop, app = loop_and_app
    assert exchange(loop, app, "/forget@someotherbot", "cmd") is None
    assert exchange(loop, app, "remember me", "cmd")
    reply = exchange(loop, app, "/export everything please", "cmd")
    assert reply is not None and "stored about you" in reply
    assert loop.run_until_complete(
        app.core.memory.context_turns(ConversationKey("discord", "hostile", "cmd"))
    )
