"""The console chat: an interactive prompt on a terminal, or one reply per line of piped stdin.

On a terminal, lines are read with readline (line editing, and a history kept in
``data_dir/console_history``) in a daemon thread of its own, so Ctrl-C leaves at once instead of
waiting for a line. The person at the console is the machine's operator: not rate-limited.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from bot.core import ChatCore
from bot.messages import Incoming, Reply

PLATFORM = "console"
QUIT = {"/quit", "/exit"}
HISTORY_FILE = "console_history"
HISTORY_LENGTH = 1000


def to_incoming(line: str, *, user: str) -> Incoming:
    """The pure mapping from a console line to the core's message type."""
    return Incoming(
        platform=PLATFORM, chat_id="console", user_id=user, text=line, is_private=True, local=True
    )


def render(reply: Reply, *, interactive: bool) -> str:
    if reply.attachment is None:
        body = reply.text
    elif interactive:
        body = reply.text + "\n" + reply.attachment.content.decode("utf-8")
    else:
        body = json.dumps(json.loads(reply.attachment.content), ensure_ascii=False, separators=(",", ":"))
    return body if interactive else " ".join(body.split("\n"))


class _Lines:
    """Lines from the terminal (with readline) or a pipe, read in a daemon thread."""

    def __init__(self, stdin: TextIO, interactive: bool, history: Path | None) -> None:
        self._stdin = stdin
        self._interactive = interactive
        self._history = history
        self._loop = asyncio.get_running_loop()
        self._wanted = threading.Semaphore(0)
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        if interactive:
            self._setup_readline()
        threading.Thread(target=self._read, name="console-input", daemon=True).start()

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # not on every platform; input() still works without it
            return
        readline.set_history_length(HISTORY_LENGTH)
        if self._history is not None and self._history.exists():
            with suppress(OSError):
                readline.read_history_file(self._history)

    def save_history(self) -> None:
        if not self._interactive or self._history is None:
            return
        try:
            import readline

            self._history.touch(mode=0o600)
            readline.write_history_file(self._history)
        except (ImportError, OSError):
            pass

    def _read(self) -> None:
        while True:
            self._wanted.acquire()  # read the next line only once the reply to this one is out
            try:
                line: str | None = input("you> ") if self._interactive else self._stdin.readline()
            except (EOFError, OSError, ValueError):
                line = None
            if line == "" and not self._interactive:
                line = None
            try:
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
            except RuntimeError:  # the chat has ended
                return
            if line is None:
                return

    async def next(self) -> str | None:
        self._wanted.release()
        return await self._lines.get()


async def run_console(
    core: ChatCore,
    *,
    user: str,
    data_dir: Path | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty() and stdout.isatty()
    if interactive:
        stdout.write("blenderd console chat. Type /help for commands, /quit or Ctrl-D to leave.\n")
        stdout.flush()
    history = data_dir / HISTORY_FILE if data_dir is not None else None
    lines = _Lines(stdin, interactive, history)
    try:
        while (raw := await lines.next()) is not None:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.strip().lower() in QUIT:
                return
            reply = await core.handle(to_incoming(line, user=user))
            if reply is None:
                continue
            text = render(reply, interactive=interactive)
            if line.strip().lower() == "/help":
                text += ("\n" if interactive else " ") + "/quit - leave the chat (or Ctrl-D)"
            stdout.write(("bot> " + text if interactive else text) + "\n")
            stdout.flush()
        if interactive:
            stdout.write(os.linesep)
    finally:
        lines.save_history()
