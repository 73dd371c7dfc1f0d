"""Shared test setup: a Config pointing at a tiny checkpoint, and a model proxy that counts calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.config import Config, parse_config
from bot.worker import Generator
from model import Hypothesis


def tiny_raw(data_dir: Path, checkpoint: Path, **sections: Any) -> dict[str, Any]:
    """A config (as the YAML file holds it) for a tiny checkpoint, float32, short greedy replies."""
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "model": {
            "source": str(checkpoint),
            "device": "cpu",
            "dtype": "float32",
            "generation": {"num_beams": 1, "max_length": 12},
        },
        # Tests of the classifier configure it (tests/test_safety.py); the rest run without it.
        "safety": {"classifier": {"enabled": False}},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def tiny_config(data_dir: Path, checkpoint: Path, **sections: Any) -> Config:
    return parse_config(tiny_raw(data_dir, checkpoint, **sections))


class CountingModel:
    """The real model with a record of each generate call (and an optional delay per call)."""

    def __init__(self, inner: Generator, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.delay = delay
        self.calls: list[int] = []
        self.thread_ids: set[int] = set()

    @property
    def max_positions(self) -> int:
        return self.inner.max_positions

    def generate(self, inputs: Sequence[Sequence[int]]) -> list[list[Hypothesis]]:
        self.calls.append(len(inputs))
        self.thread_ids.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        return self.inner.generate(inputs)


class ScriptedModel(CountingModel):
    """The real tiny model for everything but the candidate texts, which the test chooses."""

    def __init__(self, inner: Generator, texts: list[str], *, delay: float = 0.0) -> None:
        super().__init__(inner, delay=delay)
        self.texts = texts
        self.inputs: list[list[int]] = []

    def generate(self, inputs: Sequence[Sequence[int]]) -> list[list[Hypothesis]]:
        self.inputs.extend(list(x) for x in inputs)
        texts = list(self.texts)  # as they are when the request arrives
        real = super().generate(inputs)
        return [
            [Hypothesis(tokens=hs[0].tokens, text=t, score=-float(i)) for i, t in enumerate(texts)]
            for hs in real
        ]
