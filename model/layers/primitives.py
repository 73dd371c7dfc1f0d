"""Linear, LayerNorm and Embedding as Keras layers whose math is plain torch.

These layers own Keras variables (dtype policy, device placement, weight tracking) and compute
with ``torch.nn.functional`` on the variables' torch tensors, for the reason stated once in
:mod:`model`. They are built in the constructor, so parents call ``layer.call(...)`` directly.

Kernels are stored ``[out_features, in_features]`` (the torch layout, as checkpoints ship
them): ``F.linear`` on that layout is the fast path for every dtype on CPU and CUDA.

On CPUs, :meth:`Linear.use_int8` gives a layer its packed int8 kernel (:mod:`model.int8`) and
releases the float kernel's storage; ``call`` then uses dynamic int8 quantisation of the
activations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from model.int8 import Int8Weight, linear_int8, packed_bytes
from model.keras_backend import keras


class Lazy(keras.initializers.Initializer):
    """Storage without values, for weights that are always assigned before use (from a
    checkpoint or a ``.keras`` file). Large allocations are mapped lazily, so a kernel that is
    packed as int8 instead and released never touches memory (building 400M-distill: 0.11 s
    against 0.7-0.85 s with zeros)."""

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> torch.Tensor:
        return torch.empty(shape, dtype=getattr(torch, keras.backend.standardize_dtype(dtype or "float32")))


class Linear(keras.layers.Layer):
    """``y = x @ kernel.T + bias`` with ``kernel: [out, in]``."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_features = in_features
        self.out_features = out_features
        self.kernel = self.add_weight(shape=(out_features, in_features), initializer=Lazy(), name="kernel")
        self.bias = (
            self.add_weight(shape=(out_features,), initializer="zeros", name="bias") if use_bias else None
        )
        self._int8: Int8Weight | None = None  # set by use_int8()
        self.built = True

    def use_int8(self, weight: Int8Weight) -> None:
        """Compute with ``weight`` (this kernel and bias, packed: :mod:`model.int8`) and release
        the float kernel: its Keras variable keeps its shape but no data (one-way)."""
        self._int8 = weight
        self.release()

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The float kernel ``[out, in]`` and bias (what :mod:`model.int8` packs)."""
        return self.kernel.value, None if self.bias is None else self.bias.value

    def release(self) -> None:
        """Drop the float kernel's storage (after its int8 copy, here or fused, is packed)."""
        self.kernel.value.data = torch.empty(0, dtype=self.kernel.value.dtype)

    @property
    def int8_bytes(self) -> int:
        """Bytes of the packed int8 kernel (0 when not quantised)."""
        return packed_bytes(self._int8)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if self._int8 is not None:
            return linear_int8(x, self._int8)
        bias = None if self.bias is None else self.bias.value
        return F.linear(x, self.kernel.value, bias)


class LayerNorm(keras.layers.Layer):
    """LayerNorm over the last axis. Blenderbot uses epsilon 1e-5 (Keras' default 1e-3 is wrong here)."""

    def __init__(self, features: int, *, epsilon: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features = features
        self.epsilon = epsilon
        self.gamma = self.add_weight(shape=(features,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(features,), initializer="zeros", name="beta")
        self.built = True

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.features,), self.gamma.value, self.beta.value, self.epsilon)


class Embedding(keras.layers.Layer):
    """A lookup table ``[rows, features]``; also used for learned positions."""

    def __init__(self, rows: int, features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows = rows
        self.features = features
        self.embeddings = self.add_weight(shape=(rows, features), initializer=Lazy(), name="embeddings")
        self.built = True

    def call(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embeddings.value)
