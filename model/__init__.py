"""The Blenderbot model: a Keras 3 port on the PyTorch backend.

``model.load(source)`` returns a :class:`Blenderbot`; ``GenerationSettings`` says how to search;
each result is a list of :class:`Hypothesis`, best first.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

if keras.backend.backend() != "torch":
    raise ImportError(
        f"blenderd needs Keras on the torch backend; KERAS_BACKEND is {keras.backend.backend()!r}"
    )

from model.blenderbot import DTYPES, Blenderbot
from model.errors import (
    CacheContractError,
    CheckpointError,
    MissingTensorError,
    ModelError,
    TensorShapeError,
    UnexpectedTensorError,
    WeightsUnavailableError,
)
from model.hub import resolve
from model.settings import GenerationSettings, Hypothesis

__all__ = [
    "DTYPES",
    "Blenderbot",
    "CacheContractError",
    "CheckpointError",
    "GenerationSettings",
    "Hypothesis",
    "MissingTensorError",
    "ModelError",
    "TensorShapeError",
    "UnexpectedTensorError",
    "WeightsUnavailableError",
    "load",
]


def load(
    source: str | Path,
    *,
    device: str = "auto",
    dtype: str = "float32",
    data_dir: str | Path = "data",
    download: bool = True,
    generation: Mapping[str, Any] | None = None,
    candidates: int = 1,
) -> Blenderbot:
    """Load a checkpoint folder, or a hub id (downloaded into ``data_dir/models`` when missing).

    ``generation`` and ``candidates`` set how :meth:`Blenderbot.generate` searches by default.
    """
    folder = resolve(str(source), Path(data_dir), download=download)
    return Blenderbot(folder, device=device, dtype=dtype, generation=generation, candidates=candidates)
