"""The one message type every adapter produces, and the reply the core gives back."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_CHARS = 4000  # far more than a 128-token context can hold; the tail is kept


def clean_text(text: str) -> str:
    """The one cleaning of user text, where a message is made, before it is stored anywhere:
    NULs removed, lone surrogates replaced, trimmed, at most MAX_MESSAGE_CHARS (the tail kept).
    Every database accepts the result (PostgreSQL rejects NUL, UTF-8 rejects lone surrogates)."""
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return text[-MAX_MESSAGE_CHARS:] if len(text) > MAX_MESSAGE_CHARS else text


@dataclass(frozen=True)
class Incoming:
    """A message from a person. ``text`` is None for a sticker, photo, voice message or file.

    ``text`` is cleaned on construction (:func:`clean_text`), so no adapter can forget it.
    ``local``: typed by the machine's own operator (the console), so not rate-limited.
    """

    platform: str
    chat_id: str
    user_id: str
    text: str | None
    message_id: str | None = None
    is_private: bool = True
    local: bool = False

    def __post_init__(self) -> None:
        if self.text is not None:
            object.__setattr__(self, "text", clean_text(self.text))


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class Reply:
    text: str
    attachment: Attachment | None = None
