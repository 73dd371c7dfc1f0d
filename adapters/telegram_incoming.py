"""The pure mapping from a Telegram message to the core's message type: who it is from, whether
it is for this bot, and its text without the mention or prefix."""

from __future__ import annotations

from telegram import Message, MessageEntity, User
from telegram.constants import ChatType

from adapters.common import admitted, strip_prefix
from bot.messages import Incoming
from bot.platform_sections import TelegramConfig

PLATFORM = "telegram"
_MEDIA = (
    "sticker",
    "photo",
    "voice",
    "audio",
    "video",
    "video_note",
    "document",
    "animation",
    "contact",
    "location",
    "venue",
    "poll",
    "dice",
)


def _command_target(message: Message) -> str | None:
    """The bot a leading /command names (``/help@name``): "" for none, None when no command leads."""
    for entity, command in message.parse_entities([MessageEntity.BOT_COMMAND]).items():
        if entity.offset == 0:
            return command.partition("@")[2].lower()
    return None


def _mentions_me(message: Message, me: User) -> list[str]:
    """The texts of the entities that mention this bot: ``@name`` whole, or a text mention of its id."""
    name = (me.username or "").lower()
    found = []
    for entity, text in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
        if entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == me.id:
                found.append(text)
        elif name and text[1:].lower() == name:
            found.append(text)
    return found


def _addressed(message: Message, me: User, config: TelegramConfig) -> tuple[bool, str]:
    """Whether a group message is for the bot, and its text without the mention or prefix.

    Mentions and commands are read from the message's entities, as Telegram marked them: only a
    whole ``@ourbot`` counts (``@ourbot_helper`` is another bot), and ``/help@otherbot`` is not ours.
    """
    text = message.text or ""
    target = _command_target(message)
    if target and target != (me.username or "").lower():
        return False, text  # a command for another bot
    if str(message.chat.id) in config.answer_all:
        return True, text
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True, text
    if target:
        return True, text  # /command@ourbot
    mentions = _mentions_me(message, me)
    if mentions:
        for mention in mentions:
            text = text.replace(mention, " ", 1)
        return True, " ".join(text.split())
    rest = strip_prefix(text, config.command_prefix)
    if rest is not None:
        return True, rest
    return False, text


def to_incoming(message: Message, *, me: User, config: TelegramConfig) -> Incoming | None:
    """The core's message for ``message``, or None when the bot should stay silent."""
    author = message.from_user
    if author is None or author.is_bot or author.id == me.id:
        return None
    chat_id, user_id = str(message.chat.id), str(author.id)
    if not admitted(config, user_id=user_id, chat_id=chat_id):
        return None
    private = message.chat.type == ChatType.PRIVATE
    has_media = any(getattr(message, kind) for kind in _MEDIA)
    if message.text is None and not has_media:
        return None  # a service message: members joined, a pin, a title change...
    text: str | None = message.text
    if not private:
        addressed, stripped = _addressed(message, me, config)
        if not addressed:
            return None
        text = stripped if message.text is not None else None
    return Incoming(
        platform=PLATFORM,
        chat_id=chat_id,
        user_id=user_id,
        text=text if message.text is not None else None,
        message_id=str(message.message_id),
        is_private=private,
    )
