"""Encoder and decoder layers, in Blenderbot's pre-LayerNorm or BlenderbotSmall's post-LayerNorm layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from model.int8 import Int8Weight
from model.keras_backend import keras
from model.layers.attention import CachedMultiHeadAttention
from model.layers.kv_cache import KVCache
from model.layers.primitives import LayerNorm, Linear


class FeedForward(keras.layers.Layer):
    """``fc2(gelu(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, d_model: int, ffn_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dtype = kwargs.get("dtype")
        self.fc1 = Linear(d_model, ffn_dim, dtype=dtype, name="fc1")
        self.fc2 = Linear(ffn_dim, d_model, dtype=dtype, name="fc2")
        self.built = True

    def use_int8(self, kernels: Mapping[str, Int8Weight], prefix: str) -> None:
        self.fc1.use_int8(kernels[f"{prefix}.fc1"])
        self.fc2.use_int8(kernels[f"{prefix}.fc2"])

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2.call(F.gelu(self.fc1.call(x)))


class EncoderLayer(keras.layers.Layer):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, *, pre_norm: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dtype = kwargs.get("dtype")
        self.pre_norm = pre_norm
        self.self_attn = CachedMultiHeadAttention(d_model, heads, dtype=dtype, name="self_attn")
        self.self_attn_layer_norm = LayerNorm(d_model, dtype=dtype, name="self_attn_layer_norm")
        self.ffn = FeedForward(d_model, ffn_dim, dtype=dtype, name="ffn")
        self.final_layer_norm = LayerNorm(d_model, dtype=dtype, name="final_layer_norm")
        self.built = True

    def use_int8(self, kernels: Mapping[str, Int8Weight], prefix: str) -> None:
        """Packed int8 kernels named ``{prefix}.self_attn.*``, ``{prefix}.ffn.fc1``, ``.fc2``."""
        self.self_attn.use_int8(kernels, f"{prefix}.self_attn", cross=False)
        self.ffn.use_int8(kernels, f"{prefix}.ffn")

    @property
    def int8_bytes(self) -> int:
        return self.self_attn.int8_bytes + self.ffn.fc1.int8_bytes + self.ffn.fc2.int8_bytes

    def call(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``h: [B, S, D]``, ``mask``: bool ``[B, 1, 1, S]`` or None (no padding)."""
        if self.pre_norm:
            h = h + self.self_attn.call(self.self_attn_layer_norm.call(h), mask=mask)
            return h + self.ffn.call(self.final_layer_norm.call(h))
        h = self.self_attn_layer_norm.call(h + self.self_attn.call(h, mask=mask))
        return self.final_layer_norm.call(h + self.ffn.call(h))


class DecoderLayer(keras.layers.Layer):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, *, pre_norm: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dtype = kwargs.get("dtype")
        self.pre_norm = pre_norm
        self.self_attn = CachedMultiHeadAttention(d_model, heads, dtype=dtype, name="self_attn")
        self.self_attn_layer_norm = LayerNorm(d_model, dtype=dtype, name="self_attn_layer_norm")
        self.encoder_attn = CachedMultiHeadAttention(d_model, heads, dtype=dtype, name="encoder_attn")
        self.encoder_attn_layer_norm = LayerNorm(d_model, dtype=dtype, name="encoder_attn_layer_norm")
        self.ffn = FeedForward(d_model, ffn_dim, dtype=dtype, name="ffn")
        self.final_layer_norm = LayerNorm(d_model, dtype=dtype, name="final_layer_norm")
        self.built = True

    def use_int8(self, kernels: Mapping[str, Int8Weight], prefix: str) -> None:
        """Packed int8 kernels named ``{prefix}.self_attn.*``, ``{prefix}.encoder_attn.*``,
        ``{prefix}.ffn.fc1``, ``.fc2``."""
        self.self_attn.use_int8(kernels, f"{prefix}.self_attn", cross=False)
        self.encoder_attn.use_int8(kernels, f"{prefix}.encoder_attn", cross=True)
        self.ffn.use_int8(kernels, f"{prefix}.ffn")

    @property
    def int8_bytes(self) -> int:
        attn = self.self_attn.int8_bytes + self.encoder_attn.int8_bytes
        return attn + self.ffn.fc1.int8_bytes + self.ffn.fc2.int8_bytes

    def call(
        self,
        h: torch.Tensor,
        *,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        cross_mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        """``h: [B*G, T, D]``; ``cross_kv``: encoder keys/values ``[B, H, S, Dh]`` (``G`` rows of
        ``h`` per input, e.g. its beams; see :class:`CachedMultiHeadAttention`)."""
        self_kw: dict[str, Any] = {"causal": True, "cache": cache, "layer": layer}
        if self.pre_norm:
            h = h + self.self_attn.call(self.self_attn_layer_norm.call(h), **self_kw)
            h = h + self.encoder_attn.call(self.encoder_attn_layer_norm.call(h), kv=cross_kv, mask=cross_mask)
            return h + self.ffn.call(self.final_layer_norm.call(h))
        h = self.self_attn_layer_norm.call(h + self.self_attn.call(h, **self_kw))
        h = self.encoder_attn_layer_norm.call(h + self.encoder_attn.call(h, kv=cross_kv, mask=cross_mask))
        return self.final_layer_norm.call(h + self.ffn.call(h))
