"""Errors raised by the model package.

::

    ModelError
    ├── CheckpointError            a checkpoint folder is unusable
    │   ├── MissingTensorError     a tensor the architecture needs is absent
    │   ├── UnexpectedTensorError  the checkpoint holds a tensor the architecture does not know
    │   └── TensorShapeError       a tensor has the wrong shape
    ├── WeightsUnavailableError    a hub id could not be downloaded and has no local copy
    └── CacheContractError         a KV cache was used outside its contract (a bug, never user input)
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error raised by :mod:`model`."""


class CheckpointError(ModelError):
    """The checkpoint folder is missing a file, or a file cannot be read."""


class MissingTensorError(CheckpointError):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(f"checkpoint {path} has no tensor {name!r}")
        self.name = name


class UnexpectedTensorError(CheckpointError):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(f"checkpoint {path} has an unexpected tensor {name!r}")
        self.name = name


class TensorShapeError(CheckpointError):
    def __init__(self, name: str, path: str, expected: tuple[int, ...], found: tuple[int, ...]) -> None:
        super().__init__(
            f"checkpoint {path}: tensor {name!r} has shape {list(found)}, the config implies {list(expected)}"
        )
        self.name = name


class WeightsUnavailableError(ModelError):
    """Weights could not be downloaded and no local copy exists."""


class CacheContractError(ModelError):
    """A KV cache was written or read outside its contract."""
