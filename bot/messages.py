"""The one message type every adapter produces, and the reply the core gives back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Incoming:
    """A message from a person. ``text`` is None for a sticker, photo, voice message or file."""

    platform: str
    chat_id: str
    user_id: str
    text: str | None
    message_id: str | None = None
    is_private: bool = True


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class Reply:
    text: str
    attachment: Attachment | None = None
