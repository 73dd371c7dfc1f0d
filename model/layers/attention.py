"""Multi-head attention with a preallocated self-attention cache and precomputed cross keys/values."""

from __future__ import annotations

from typing import Any

import keras
import torch
import torch.nn.functional as F

from model.layers.kv_cache import KVCache
from model.layers.primitives import Linear


class CachedMultiHeadAttention(keras.layers.Layer):
    """Blenderbot attention: q/k/v/out projections with biases, softmax(q k^T / sqrt(d)) v.

    Self-attention: ``call(x, cache=..., layer=i)`` projects keys and values of ``x`` and, with a
    cache, stores them there and attends over everything cached (see :class:`KVCache`).
    Cross-attention: keys and values of the encoder output are projected once per generate call
    with :meth:`project_kv` and passed to every step as ``kv``.
    """

    def __init__(self, d_model: int, num_heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        dtype = kwargs.get("dtype")
        self.q_proj = Linear(d_model, d_model, dtype=dtype, name="q_proj")
        self.k_proj = Linear(d_model, d_model, dtype=dtype, name="k_proj")
        self.v_proj = Linear(d_model, d_model, dtype=dtype, name="v_proj")
        self.out_proj = Linear(d_model, d_model, dtype=dtype, name="out_proj")
        self.built = True

    def linears(self) -> list[Linear]:
        return [self.q_proj, self.k_proj, self.v_proj, self.out_proj]

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        # [B, T, D] -> [B, T, H, Dh] -> [B, H, T, Dh]
        return x.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``source: [B, S, D]`` -> keys and values ``[B, H, S, Dh]``."""
        return self._split(self.k_proj.call(source)), self._split(self.v_proj.call(source))

    def call(
        self,
        x: torch.Tensor,
        *,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """``x: [B, T, D]``; ``mask``: bool ``[B, 1, 1, S]``, True where a key may be attended."""
        batch, steps, d_model = x.shape
        q = self._split(self.q_proj.call(x))  # [B, H, T, Dh]
        if kv is None:
            k, v = self.project_kv(x)  # [B, H, T, Dh]
            if cache is not None:
                k, v = cache.update(layer, k, v)  # [B, H, past + T, Dh]
        else:
            k, v = kv  # [B, H, S, Dh]
        # A causal mask is only needed over a block of several new positions, which the cache
        # contract allows only from position 0, so the block is square.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and steps > 1)
        # [B, H, T, Dh] -> [B, T, H, Dh] -> [B, T, D]
        out = out.transpose(1, 2).reshape(batch, steps, d_model)
        return self.out_proj.call(out)
