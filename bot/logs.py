"""Logging: one line per event to stderr, with every secret value scrubbed from the output."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from bot.config import secret

SECRET_VARIABLES = ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "BLENDERD_DATABASE_URL", "BLENDERD_WEB_TOKEN")
_NOISY = (
    "httpx",
    "httpcore",
    "urllib3",
    "filelock",
    "alembic",
    "discord.gateway",
    "discord.http",
    "aiohttp.access",
)


class RedactingFormatter(logging.Formatter):
    """Formats a record, then replaces each secret (tracebacks included) with ``[redacted]``."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")  # one line per event, tracebacks too
        for value in self.secrets:
            text = text.replace(value, "[redacted]")
        return text


def _secret_values() -> list[str]:
    values = []
    for name in SECRET_VARIABLES:
        try:
            value = secret(name)
        except Exception:  # an unreadable *_FILE is reported by the command that needs it
            value = None
        if not value:
            continue
        values.append(value)
        password = urlsplit(value).password if "://" in value else None
        if password:
            values.append(password)
    return values


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", _secret_values())
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for name in _NOISY:  # their INFO/DEBUG lines carry request URLs, which hold the Telegram token
        logging.getLogger(name).setLevel(quiet)
