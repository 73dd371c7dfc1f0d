"""The commands every platform shares: /help, /reset, /forget, /export, /memory; and running them."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from bot.messages import Attachment, Reply
from bot.sections import MemoryConfig
from memory import ConversationKey, MemoryStore

logger = logging.getLogger(__name__)

COMMANDS = {
    "help": "show this help",
    "reset": "start a fresh conversation (I stop remembering what we said before)",
    "forget": "delete everything I have stored about you on this platform",
    "export": "get everything I have stored about you here as a JSON file",
    "memory": "what I remember about you (/memory forget N, /memory off, /memory on)",
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


MEMORY_DISABLED = "Long-term memory is turned off on this bot: I only see our last few messages."
MEMORY_USAGE = (
    "Send /memory to see what I remember, /memory forget N to delete one, /memory off or /memory on."
)


class CommandRunner:
    """Runs a parsed command for one conversation and says the outcome in one reply."""

    def __init__(self, memory: MemoryStore, config: MemoryConfig) -> None:
        self.memory = memory
        self.config = config

    async def run(self, command: Command, key: ConversationKey) -> Reply:
        logger.info("command /%s on %s", command.name, key.platform)
        if not command.known:
            return Reply(f"I don't know the command /{command.name}. Send /help to see what I can do.")
        if command.name == "help":
            return Reply(help_text())
        if command.name == "reset":
            await self.memory.reset(key)
            return Reply("Okay, let's start fresh. I won't bring up what we talked about before.")
        if command.name == "forget":
            deleted = await self.memory.forget(key.platform, key.user_id)
            return Reply(
                f"Done: I deleted everything I had stored about you on {key.platform} "
                f"({deleted} message{'s' if deleted != 1 else ''})."
            )
        if command.name == "memory":
            return Reply(await self._memory(command.args, key))
        document = await self.memory.export(key.platform, key.user_id)
        content = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        turns = sum(len(c["turns"]) for c in document["conversations"])
        return Reply(
            f"Here is everything I have stored about you on {key.platform} ({turns} messages).",
            Attachment(filename="blenderd-export.json", content=content, mime_type="application/json"),
        )

    async def _memory(self, args: str, key: ConversationKey) -> str:
        if not self.config.enabled:
            return MEMORY_DISABLED
        longterm = self.memory.longterm
        words = args.lower().split()
        if not words:
            facts = await longterm.facts(key)
            remembers = await longterm.remembers(key.platform, key.user_id)
            lines = [] if remembers else ["Remembering is off for you: send /memory on to turn it back on."]
            if facts:
                lines.append("Here is what I remember about you in this chat:")
                lines += [f"{number}. {fact}" for number, fact in enumerate(facts, 1)]
                lines.append("Send /memory forget N to delete one, or /forget to delete everything.")
            elif remembers:
                lines.append("I don't remember anything about you in this chat yet. Tell me about yourself!")
            return "\n".join(lines)
        if words[0] == "forget" and len(words) == 2 and words[1].isdigit():
            forgotten = await longterm.forget_fact(key, int(words[1]))
            if forgotten is None:
                return f"There is no number {words[1]} in my memory of you. Send /memory to see the list."
            return f"Done, I forgot: {forgotten}"
        if words == ["off"]:
            await longterm.set_remember(key.platform, key.user_id, False)
            return (
                "Okay: from now on I won't remember anything new about you or bring up what I remembered. "
                "What I already remembered stays until you delete it (/memory forget N, or /forget). "
                "Send /memory on to change your mind."
            )
        if words == ["on"]:
            await longterm.set_remember(key.platform, key.user_id, True)
            return "Okay, I'll remember what you tell me about yourself again."
        return MEMORY_USAGE
