"""Generation settings and results: the types the rest of the project passes to and gets from the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from model.config import read_json

_CHECKPOINT_KEYS = (
    "num_beams",
    "min_length",
    "max_length",
    "length_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "do_sample",
    "top_k",
    "top_p",
    "temperature",
)


@dataclass(frozen=True)
class GenerationSettings:
    """How to search. Lengths count decoder positions including the start token, as in transformers.

    ``num_beams > 1`` selects beam search (transformers' semantics, ``early_stopping=False``);
    ``do_sample`` selects top-k / top-p sampling with ``temperature`` and ``seed``; otherwise greedy.
    ``num_return`` hypotheses come back per input, best first (at most ``num_beams`` for beam search).
    """

    num_beams: int = 1
    min_length: int = 0
    max_length: int = 60
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    do_sample: bool = False
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None
    num_return: int = 1

    def __post_init__(self) -> None:
        positive = ("num_beams", "max_length", "num_return")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"generation setting {name} must be at least 1, got {getattr(self, name)}")
        for name in ("min_length", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "top_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"generation setting {name} must not be negative, got {getattr(self, name)}")
        if self.min_length > self.max_length:
            raise ValueError(f"generation setting min_length ({self.min_length}) exceeds max_length")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"generation setting top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0.0:
            raise ValueError(f"generation setting temperature must be positive, got {self.temperature}")
        if self.num_beams > 1 and self.num_return > self.num_beams:
            raise ValueError("generation setting num_return cannot exceed num_beams for beam search")
        if self.num_beams == 1 and not self.do_sample and self.num_return != 1:
            raise ValueError("greedy decoding returns one hypothesis: set num_return to 1")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam sampling is not supported: set num_beams to 1 or do_sample to false")

    def with_overrides(self, **overrides: Any) -> GenerationSettings:
        return replace(self, **overrides)

    def for_replies(self, overrides: Mapping[str, Any], candidates: int) -> GenerationSettings:
        """The settings a chat reply is generated with: these (a checkpoint's defaults) with the
        config's ``overrides``, returning up to ``candidates`` hypotheses for safety to choose from
        where the search makes several (beam search: at most ``num_beams``; greedy: one)."""
        settings = self.with_overrides(**overrides)
        if settings.num_beams > 1:
            keep = min(candidates, settings.num_beams)
        else:
            keep = candidates if settings.do_sample else 1
        return settings.with_overrides(num_return=keep)

    @classmethod
    def from_checkpoint(cls, folder: Path) -> GenerationSettings:
        """Defaults from generation_config.json, else the generation keys of config.json."""
        source = folder / "generation_config.json"
        raw = read_json(source) if source.exists() else read_json(folder / "config.json")
        known = {f.name for f in fields(cls)}
        values = {k: raw[k] for k in _CHECKPOINT_KEYS if k in raw and raw[k] is not None and k in known}
        if values.get("min_length", 0) > values.get("max_length", cls.max_length):
            values["min_length"] = 0
        return cls(**values)


@dataclass(frozen=True)
class Hypothesis:
    """One candidate reply: generated ids (no start token, with the end token if one was produced)."""

    tokens: tuple[int, ...]
    text: str
    score: float
