"""config.yaml, validated once at start into a frozen object that is passed down (its sections:
:mod:`bot.sections`).

Secrets never live in the file: each comes from an environment variable or from a file named
by ``<VARIABLE>_FILE`` (Docker secrets). A bad file stops the start with one line naming the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, ValidationInfo, field_validator

from bot.platform_sections import DiscordConfig, TelegramConfig, WebConfig
from bot.sections import (
    ConsoleConfig,
    DatabaseConfig,
    HttpConfig,
    LoggingConfig,
    MemoryConfig,
    ModelConfig,
    RateLimitConfig,
    RecoveryConfig,
    SafetyConfig,
    Section,
    ShutdownConfig,
    WorkerConfig,
    relative_to_config,
)

DEFAULT_CONFIG = Path("config.yaml")
CONFIG_VARIABLE = "BLENDERD_CONFIG"


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid; the message is one line."""


class Config(Section):
    data_dir: Path = Path("data")
    model: ModelConfig = ModelConfig()
    database: DatabaseConfig = DatabaseConfig()
    persona: tuple[str, ...] = ()
    memory: MemoryConfig = MemoryConfig()
    worker: WorkerConfig = WorkerConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    logging: LoggingConfig = LoggingConfig()
    console: ConsoleConfig = ConsoleConfig()
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    http: HttpConfig = HttpConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    safety: SafetyConfig = SafetyConfig()
    web: WebConfig = WebConfig()

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path, info: ValidationInfo) -> Path:
        resolved = relative_to_config(value, info)
        assert resolved is not None
        return resolved

    @field_validator("persona")
    @classmethod
    def _persona_lines(cls, lines: tuple[str, ...]) -> tuple[str, ...]:
        for line in lines:
            if not line.strip():
                raise ValueError("persona lines must not be empty")
        return tuple(line.strip() for line in lines)

    def database_url(self) -> str:
        from memory.engine import default_url

        return secret("BLENDERD_DATABASE_URL") or self.database.url or default_url(self.data_dir)

    def remote_url(self) -> str | None:
        """The Redis of the remote model workers (BLENDERD_REDIS_URL, else model.remote), or None."""
        return secret("BLENDERD_REDIS_URL") or self.model.remote


def secret(name: str) -> str | None:
    """The value of environment variable ``name``, or the contents of the file ``name_FILE`` names."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ConfigError(f"{name}_FILE points at {path}, which cannot be read: {exc.strerror}") from None


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key (check the spelling against config.yaml's comments)"
    if kind == "missing":
        return f"{where}: required value is missing"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def parse_config(raw: Any, *, source: str = "config.yaml", base: Path | None = None) -> Config:
    """Validate ``raw``; relative paths in it are relative to ``base`` (default: the working directory)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    try:
        return Config.model_validate(raw, context={"base": base or Path.cwd()})
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0])}{more}") from None


def config_path(path: Path | None = None) -> tuple[Path, bool]:
    """The config file to read (``--config``, else $BLENDERD_CONFIG, else ./config.yaml), and whether
    it was named explicitly (an explicit file must exist)."""
    if path is not None:
        return path, True
    named = os.environ.get(CONFIG_VARIABLE)
    if named:
        return Path(named), True
    return DEFAULT_CONFIG, False


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config file. A missing default file means all defaults.

    Relative paths in the file (data_dir, a model folder, log file, classifier files) are relative to
    the file's own folder, so the bot finds the same files from any working directory.
    """
    path, explicit = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(raw, source=str(path), base=path.resolve().parent)


PLATFORM_TOKENS = {"telegram": "TELEGRAM_TOKEN", "discord": "DISCORD_TOKEN"}


def platform_tokens(config: Config) -> dict[str, str]:
    """The token of every enabled platform; a missing one stops the start with the fix."""
    tokens: dict[str, str] = {}
    for platform, variable in PLATFORM_TOKENS.items():
        enabled = getattr(config, platform).enabled
        if enabled is False:
            continue
        token = secret(variable)
        if not token and enabled == "auto":
            continue
        if not token:
            raise ConfigError(
                f"{platform} is enabled in the config but {variable} is not set: export {variable}=<token> "
                f"(or {variable}_FILE=<path>), or set {platform}.enabled: false"
            )
        tokens[platform] = token
    return tokens


WEBHOOK_SECRET = "TELEGRAM_WEBHOOK_SECRET"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as secret_token


def webhook_secret(config: Config) -> str | None:
    """The secret Telegram sends with every webhook update (telegram.mode: webhook), else None."""
    telegram = config.telegram
    if telegram.mode != "webhook" or telegram.enabled is False:
        return None
    if not telegram.webhook_url:
        raise ConfigError(
            "telegram.mode is webhook but telegram.webhook_url is not set: set it to the public https URL "
            "that reaches this daemon's HTTP server (e.g. https://bot.example.com/telegram/webhook)"
        )
    if not config.http.enabled:
        raise ConfigError(
            "telegram.mode: webhook needs http.enabled: true (the HTTP server takes the updates)"
        )
    value = secret(WEBHOOK_SECRET)
    if not value or not _SECRET_TOKEN.match(value):
        raise ConfigError(
            f"telegram.mode is webhook but {WEBHOOK_SECRET} is {'not set' if not value else 'not valid'}: "
            f"export {WEBHOOK_SECRET} (or {WEBHOOK_SECRET}_FILE) with 1-256 characters of A-Z, a-z, 0-9, _ "
            "and -, e.g. the output of `openssl rand -hex 32`"
        )
    return value


def runnable(config: Config) -> dict[str, str]:
    """What `python -m bot run` checks first: the platform tokens, and that something is enabled."""
    tokens = platform_tokens(config)
    if "telegram" in tokens:
        webhook_secret(config)
    if not tokens and not config.web.enabled:
        raise ConfigError(
            "nothing to run: enable telegram or discord (with its token) or web in the config, "
            "or use `python -m bot chat` to talk in the terminal"
        )
    if config.web.enabled and not config.http.enabled:
        raise ConfigError("web.enabled needs http.enabled: true (the web chat is served by the HTTP server)")
    return tokens
