"""The sections of config.yaml, one typed, frozen model each; :class:`bot.config.Config` holds them.

Relative paths in a section are resolved against the config file's folder (``relative_to_config``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _base(info: ValidationInfo) -> Path:
    """The folder relative paths are read from: the config file's, else the working directory."""
    context = info.context if isinstance(info.context, dict) else {}
    return Path(context.get("base", "."))


def relative_to_config(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (_base(info) / value).resolve()


def is_hub_id(source: str) -> bool:
    """``org/name`` (a hub id); anything else (``./x``, ``~/x``, ``a/b/c``, ``x``) is a folder."""
    return bool(_HUB_ID.match(source))


class GenerationConfig(Section):
    """Overrides of the checkpoint's own generation defaults; unset keys keep the checkpoint's."""

    num_beams: int | None = Field(default=None, ge=1)
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=2)
    length_penalty: float | None = None
    no_repeat_ngram_size: int | None = Field(default=None, ge=0)
    encoder_no_repeat_ngram_size: int | None = Field(default=None, ge=0)
    do_sample: bool | None = None
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    temperature: float | None = Field(default=None, gt=0.0)
    seed: int | None = None

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ModelConfig(Section):
    source: str = "facebook/blenderbot-400M-distill"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = "auto"
    generation: GenerationConfig = GenerationConfig()
    candidates: int = Field(default=3, ge=1, description="n-best replies kept for the safety check")
    timeout_seconds: float = Field(default=60.0, gt=0)
    # A redis:// URL: the daemon loads only the tokenizer and sends each generation to model workers
    # (`python -m bot worker`, one per GPU or CPU) through this Redis (docs/scaling.md).
    remote: str | None = None

    @field_validator("remote")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// (or rediss://) URL, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("source")
    @classmethod
    def _folder_or_hub_id(cls, source: str, info: ValidationInfo) -> str:
        """A folder (relative to the config file) becomes an absolute path; a hub id stays as it is."""
        source = source.strip()
        if not source:
            raise ValueError("must be a hub id like facebook/blenderbot-400M-distill or a folder")
        local = Path(source).expanduser()
        if not local.is_absolute():
            local = _base(info) / local
        if is_hub_id(source) and not local.exists():
            return source
        return str(local.resolve())


class DatabaseConfig(Section):
    url: str | None = None
    retention_days: int | None = Field(default=None, ge=1)


class MemoryConfig(Section):
    """Long-term memory: facts a person stated and their older turns, brought back when relevant."""

    enabled: bool = True
    # Of the model's 128 input tokens, at most this many go to remembered material.
    budget_tokens: int = Field(default=32, ge=0, le=96)
    # How remembered facts reach the model: as earlier user turns (what 400M-distill was tuned on)
    # or as "partner's persona:" lines.
    style: Literal["turns", "partner_persona"] = "turns"
    search_older_turns: bool = True


class WorkerConfig(Section):
    max_batch: int = Field(default=8, ge=1, le=64)
    max_wait_ms: float = Field(default=15.0, ge=0, le=1000)
    queue_size: int = Field(default=64, ge=1)
    # Remote workers: a job taken by a worker that stopped answering (killed, its machine gone)
    # is taken over by another after this long. A live worker renews its jobs while it works.
    claim_after_seconds: float = Field(default=15.0, gt=0)


class RateLimitConfig(Section):
    messages: int = Field(default=20, ge=1)
    per_seconds: float = Field(default=60.0, gt=0)


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    message_text: bool = False
    # Also write the log to this file (relative to the config file's folder).
    file: Path | None = None

    @field_validator("file")
    @classmethod
    def _file_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return relative_to_config(value, info)


class ConsoleConfig(Section):
    user: str = "local"


class WordlistConfig(Section):
    enabled: bool = True
    extra: tuple[str, ...] = ()  # more phrases to block
    allow: tuple[str, ...] = ()  # phrases of the shipped list to let through


class ClassifierConfig(Section):
    # false runs without the classifier (said in the log at start); true refuses to start without it.
    enabled: bool = True
    # Detoxify's models, or alt-profanity-check (its model ships in its package: no download).
    model: Literal[
        "original", "unbiased", "multilingual", "original-small", "unbiased-small", "alt-profanity-check"
    ] = "original"
    # Offline use: a Detoxify checkpoint file and a folder with its base model's config.json and
    # tokenizer files. Empty: the checkpoint of `model` downloads once into data_dir/safety.
    checkpoint: Path | None = None
    config_folder: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    threshold: float = Field(default=0.5, gt=0, le=1)  # for every label without its own below
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("checkpoint", "config_folder")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return relative_to_config(value, info)

    @field_validator("thresholds")
    @classmethod
    def _in_range(cls, values: dict[str, float]) -> dict[str, float]:
        for label, value in values.items():
            if not 0 < value <= 1:
                raise ValueError(f"threshold of {label} must be in (0, 1], got {value}")
        return values


class PatternsConfig(Section):
    # Threats, self-harm encouragement and harassment without swear words (safety/patterns.py).
    enabled: bool = True


class CareConfig(Section):
    """Disclosures answered with care, never blocked as abuse and never left to the model."""

    enabled: bool = True
    self_harm_reply: str = (
        "I'm really sorry you're feeling this way, and I'm glad you told me. You don't have to go "
        "through this alone: please talk to someone you trust, or a crisis line: in the US call or "
        "text 988; elsewhere, findahelpline.com lists free, confidential lines near you. If you are in "
        "danger right now, call your local emergency number."
    )
    harassed_reply: str = (
        "I'm sorry that happened to you. Nobody deserves to be treated like that, and it is not your "
        "fault. It can help to block and report them, keep screenshots, and tell someone you trust. If "
        "it ever makes you think about hurting yourself, please reach out to a crisis line (in the US, 988)."
    )
    # Whether these turns may enter later contexts (by default they stay out of the model's input).
    keep_in_context: bool = False


class SafetyConfig(Section):
    wordlist: WordlistConfig = WordlistConfig()
    patterns: PatternsConfig = PatternsConfig()
    care: CareConfig = CareConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    blocked_input_reply: str = (
        "I'd rather not talk about that. Let's keep things friendly. What else is on your mind?"
    )
    fallback_reply: str = (
        "Let's talk about something else. What's something good that happened to you lately?"
    )


class HttpConfig(Section):
    """The HTTP server of `python -m bot run`: /healthz and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class RecoveryConfig(Section):
    # After a crash, messages accepted but not answered are answered at the next start; one older
    # than this gets a note that it was missed instead.
    missed_after_seconds: float = Field(default=3600.0, ge=0)


class ShutdownConfig(Section):
    # On SIGTERM/SIGINT, replies in flight get this long to finish before they are cancelled.
    grace_seconds: float = Field(default=20.0, ge=0)
