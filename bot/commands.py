"""The commands every platform shares: /help, /reset, /forget, /export."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMANDS = {
    "help": "show this help",
    "reset": "start a fresh conversation (I stop remembering what we said before)",
    "forget": "delete everything I have stored about you on this platform",
    "export": "get everything I have stored about you here as a JSON file",
}
ALIASES = {"start": "help"}

_PATTERN = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+(.*))?$", re.DOTALL)


@dataclass(frozen=True)
class Command:
    name: str  # a key of COMMANDS, or the unknown name as typed
    args: str
    known: bool


def parse_command(text: str, *, bot_username: str | None = None) -> Command | None:
    """The command in ``text``, or None when it is not a command for this bot.

    ``/forget@otherbot`` addresses another bot and is not ours; arguments are ignored.
    """
    match = _PATTERN.match(text.strip())
    if match is None:
        return None
    name, target, args = match.group(1).lower(), match.group(2), (match.group(3) or "").strip()
    if target is not None and (bot_username is None or target.lower() != bot_username.lower()):
        return None
    name = ALIASES.get(name, name)
    return Command(name=name, args=args, known=name in COMMANDS)


def help_text() -> str:
    lines = ["I'm a chatbot: just talk to me. Commands:"]
    lines += [f"/{name} - {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)
