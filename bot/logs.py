"""Logging: one line per event, with every secret value scrubbed from everything the process writes.

Secrets (tokens, the web token, a database password) are replaced with ``[redacted]`` in log lines
and, through :class:`RedactingStream` on stdout and stderr, in anything else written there:
tracebacks, warnings, a library's own messages. A database URL keeps its shape with only its
password masked, so the reader still sees which database is meant.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from bot.config import secret

SECRET_VARIABLES = (
    "TELEGRAM_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "DISCORD_TOKEN",
    "BLENDERD_DATABASE_URL",
    "BLENDERD_WEB_TOKEN",
    "BLENDERD_REDIS_URL",
)
URL_VARIABLES = ("BLENDERD_DATABASE_URL",)
# Their INFO/DEBUG lines carry request URLs, which hold the Telegram token: WARNING and above only.
_URL_LOGGERS = (
    "httpx",
    "httpx2",
    "httpcore",
    "urllib3",
    "filelock",
    "alembic",
    "discord.gateway",
    "discord.http",
    "aiohttp.access",
)
# Their DEBUG lines carry message text (request bodies, gateway payloads): INFO and above unless
# logging.message_text is on.
_TEXT_LOGGERS = ("telegram", "discord", "websockets", "hpack")
# SQL parameters are message text, and their INFO lines are noise: WARNING unless message_text is on.
_SQL_LOGGERS = ("aiosqlite", "sqlalchemy", "asyncpg")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.secrets:
            if value in text:
                text = text.replace(value, "[redacted]")
        return text


class RedactingFormatter(logging.Formatter):
    """Formats a record on one line (tracebacks too), then removes every secret."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record).replace("\n", " | "))


class RedactingStream(io.TextIOBase):
    """A text stream that removes secrets from each write before passing it on."""

    def __init__(self, inner: TextIO, redact: Redactor) -> None:
        self.inner = inner
        self.redact = redact

    def write(self, text: str) -> int:
        self.inner.write(self.redact(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.inner.encoding


def secret_values(extra_urls: Iterable[str] = ()) -> list[str]:
    """Every secret this process knows: token values, and the password of each database URL."""
    values: list[str] = []
    urls = list(extra_urls)
    for name in SECRET_VARIABLES:
        try:
            value = secret(name)
        except Exception:  # an unreadable *_FILE is reported by the command that needs it
            value = None
        if not value:
            continue
        if name in URL_VARIABLES:
            urls.append(value)
        else:
            values.append(value)
    for url in urls:
        try:
            password = urlsplit(url).password if "://" in url else None
        except ValueError:
            password = None
        if password:
            values.append(password)
    return values


def setup_logging(
    level: str,
    *,
    message_text: bool = False,
    file: Path | None = None,
    terminal_level: str | None = None,
    extra_urls: Iterable[str] = (),
) -> None:
    """Log to stderr at ``terminal_level`` (default ``level``) and, when given, to ``file`` at ``level``."""
    redactor = Redactor(secret_values(extra_urls))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        inner = stream.inner if isinstance(stream, RedactingStream) else stream
        setattr(sys, name, RedactingStream(inner, redactor))
    formatter = RedactingFormatter(FORMAT, redactor.secrets)
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(formatter)
    terminal.setLevel(terminal_level or level)
    handlers: list[logging.Handler] = [terminal]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(formatter)
        handlers.append(to_file)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    numeric = logging.getLevelName(level)
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    for name in _TEXT_LOGGERS:
        logging.getLogger(name).setLevel(numeric if message_text else max(logging.INFO, numeric))
    for name in _SQL_LOGGERS:
        logging.getLogger(name).setLevel(numeric if message_text else max(logging.WARNING, numeric))
    logging.captureWarnings(True)
