"""The console chat: an interactive prompt on a terminal, or one reply per line of piped stdin."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from bot.core import ChatCore
from bot.messages import Incoming, Reply

PLATFORM = "console"
QUIT = {"/quit", "/exit"}


def to_incoming(line: str, *, user: str) -> Incoming:
    """The pure mapping from a console line to the core's message type."""
    return Incoming(platform=PLATFORM, chat_id="console", user_id=user, text=line, is_private=True)


def render(reply: Reply, *, interactive: bool) -> str:
    if reply.attachment is None:
        body = reply.text
    elif interactive:
        body = reply.text + "\n" + reply.attachment.content.decode("utf-8")
    else:
        body = json.dumps(json.loads(reply.attachment.content), ensure_ascii=False, separators=(",", ":"))
    return body if interactive else " ".join(body.split("\n"))


async def run_console(
    core: ChatCore, *, user: str, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> None:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty() and stdout.isatty()
    if interactive:
        stdout.write("blenderd console chat. Type /help for commands, /quit or Ctrl-D to leave.\n")
        stdout.flush()
    while True:
        if interactive:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                stdout.write("\n")
                return
        else:
            raw = await asyncio.to_thread(stdin.readline)
            if not raw:
                return
            line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.strip().lower() in QUIT:
            return
        reply = await core.handle(to_incoming(line, user=user))
        if reply is None:
            continue
        text = render(reply, interactive=interactive)
        stdout.write(("bot> " + text if interactive else text) + "\n")
        stdout.flush()
