"""Linear, LayerNorm and Embedding as Keras layers whose math is plain torch.

These layers own Keras variables (dtype policy, device placement, weight tracking) and compute
with ``torch.nn.functional`` on the variables' torch tensors, for the reason stated once in
:mod:`model`. They are built in the constructor, so parents call ``layer.call(...)`` directly.

Kernels are stored ``[out_features, in_features]`` (the torch layout, as checkpoints ship
them): ``F.linear`` on that layout is the fast path for every dtype on CPU and CUDA.

On CPUs, :meth:`Linear.quantize_int8` packs an int8 copy of the kernel (per output channel, for
fbgemm) and releases the float kernel's storage; ``call`` then uses dynamic int8 quantisation of
the activations: 4-6x faster than float32 matmuls on AVX2 machines without bfloat16 units
(measured on the CI CPU), and a quarter of the memory. Kernels are packed for fbgemm, the faster
engine at the few rows of a decoding step; on CPUs with AMX int8 tiles, the kernels that read
whole sequences (the encoder, cross-attention keys and values) are packed for oneDNN instead
(see :func:`sequence_engine`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Int8Weight:
    """A packed int8 kernel (symmetric, per output channel; bias float32) and the engine it was
    packed for, which says how its activations are quantised: fbgemm's with ``reduce_range`` (7
    bits, so AVX2's 16-bit accumulation cannot saturate), oneDNN's with all 8."""

    packed: Any  # the engine's packed weight for torch.ops.quantized.linear_dynamic
    engine: str  # torch.backends.quantized.engine when it was packed

    @property
    def reduce_range(self) -> bool:
        return self.engine != "onednn"


@functools.cache
def sequence_engine() -> str | None:
    """``"onednn"`` where the CPU has AMX int8 tiles and torch has oneDNN, else None (fbgemm).

    Measured on such a CPU (Xeon, 2 cores), one int8 linear over 61-976 rows: oneDNN 1.3-4x faster
    than fbgemm; over 1-10 rows fbgemm is 1.2-1.7x faster, so the decoder's per-step kernels stay
    with fbgemm.
    """
    if "onednn" not in torch.backends.quantized.supported_engines:
        return None
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:  # not Linux: fbgemm everywhere
        return None
    return "onednn" if " amx_int8" in info else None


@contextmanager
def packing_engine(engine: str) -> Iterator[None]:
    """Pack with ``engine`` inside the block. The engine is a process-wide torch setting: only one
    block may be open at a time, and nothing else may pack meanwhile."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def pack_int8(kernel: torch.Tensor, bias: torch.Tensor | None) -> Int8Weight:
    """``kernel: [out, in]`` -> an int8 weight for the current engine (fbgemm unless inside
    :func:`packing_engine`); ``bias`` stays float32."""
    kernel = kernel.detach().float().cpu()
    scales = (kernel.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    zero_points = torch.zeros(kernel.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # the quantized-tensor API is deprecated but still the fbgemm path
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_channel(kernel, scales, zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float().cpu())
    return Int8Weight(packed, engine=torch.backends.quantized.engine)


def linear_int8(x: torch.Tensor, weight: Int8Weight) -> torch.Tensor:
    """``x: [..., in]`` float32 through a :func:`pack_int8` weight -> ``[..., out]`` float32."""
    return torch.ops.quantized.linear_dynamic(x, weight.packed, weight.reduce_range)


def packed_bytes(weight: Int8Weight | None) -> int:
    """Bytes a :func:`pack_int8` weight holds (0 for None): its int8 kernel, twice for oneDNN,
    which keeps the kernel it was given (for unpacking) beside its own packed copy (measured: 1.9
    bytes per weight held)."""
    if weight is None:
        return 0
    kernel, _ = torch.ops.quantized.linear_unpack(weight.packed)
    return int(kernel.numel()) * (2 if weight.engine == "onednn" else 1)


class Linear(keras.layers.Layer):
    """``y = x @ kernel.T + bias`` with ``kernel: [out, in]``."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_features = in_features
        self.out_features = out_features
        self.kernel = self.add_weight(shape=(out_features, in_features), initializer="zeros", name="kernel")
        self.bias = (
            self.add_weight(shape=(out_features,), initializer="zeros", name="bias") if use_bias else None
        )
        self._int8: Int8Weight | None = None  # set by quantize_int8()
        self.built = True

    def quantize_int8(self) -> None:
        """Pack an int8 copy of the kernel (symmetric, per output channel) for CPU inference, then
        release the float kernel: its Keras variable keeps its shape but no data (one-way; a
        second call does nothing)."""
        if self._int8 is not None:
            return
        self._int8 = pack_int8(self.kernel.value, None if self.bias is None else self.bias.value)
        self.release()

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
        self.embeddings = self.add_weight(shape=(rows, features), initializer="zeros", name="embeddings")
        self.built = True

    def call(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embeddings.value)
