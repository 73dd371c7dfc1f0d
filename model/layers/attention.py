"""Multi-head attention with a preallocated self-attention cache and precomputed cross keys/values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from model.int8 import Int8Weight, linear_int8, packed_bytes
from model.keras_backend import keras
from model.layers.kv_cache import KVCache
from model.layers.primitives import Linear


class CachedMultiHeadAttention(keras.layers.Layer):
    """Blenderbot attention: q/k/v/out projections with biases, softmax(q k^T / sqrt(d)) v.

    Self-attention: ``call(x, cache=..., layer=i)`` projects keys and values of ``x`` and, with a
    cache, stores them there and attends over everything cached (see :class:`KVCache`).
    Cross-attention: keys and values of the encoder output are projected once per generate call
    with :meth:`project_kv` and passed to every step as ``kv``. ``kv`` may hold fewer rows than
    ``x`` (``G`` rows of ``x`` per row of ``kv``, e.g. the beams of one input): the queries of a
    group then attend to their shared keys and values as one block, instead of one copy per beam.

    After :meth:`use_int8` the projections that read the same input run as one int8 kernel:
    q, k and v of self-attention, k and v of the encoder output for cross-attention.
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
        self._fused: Int8Weight | None = None  # [q; k; v] (self-attention) or [k; v] (cross)
        self.built = True

    def linears(self) -> list[Linear]:
        return [self.q_proj, self.k_proj, self.v_proj, self.out_proj]

    def use_int8(self, kernels: Mapping[str, Int8Weight], prefix: str, *, cross: bool) -> None:
        """Compute with packed int8 kernels (CPU; one-way): ``{prefix}.qkv`` (self-attention) or
        ``{prefix}.kv`` (cross), and one per remaining projection (:func:`model.int8.kernel_groups`)."""
        fused = [self.k_proj, self.v_proj] if cross else [self.q_proj, self.k_proj, self.v_proj]
        self._fused = kernels[f"{prefix}.kv" if cross else f"{prefix}.qkv"]
        for lin in fused:
            lin.release()
        for name in ("q_proj", "out_proj") if cross else ("out_proj",):
            getattr(self, name).use_int8(kernels[f"{prefix}.{name}"])

    @property
    def int8_bytes(self) -> int:
        return packed_bytes(self._fused) + sum(lin.int8_bytes for lin in self.linears())

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = x.shape
        # [B, T, D] -> [B, T, H, Dh] -> [B, H, T, Dh]
        return x.view(batch, steps, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``source: [B, S, D]`` -> keys and values ``[B, H, S, Dh]``."""
        if self._fused is not None:
            k, v = linear_int8(source, self._fused).chunk(2, dim=-1)
            return self._split(k).contiguous(), self._split(v).contiguous()
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
        """``x: [B*G, T, D]``; ``kv``: ``[B, H, S, Dh]``; ``mask``: bool ``[B, 1, 1, S]``, True where
        a key may be attended. ``G`` is 1 for self-attention."""
        batch, steps, d_model = x.shape
        if kv is not None:
            return self.out_proj.call(self._attend_encoder(x, kv, mask))
        if self._fused is not None:
            q, k, v = (self._split(t) for t in linear_int8(x, self._fused).chunk(3, dim=-1))
        else:
            q, k, v = self._split(self.q_proj.call(x)), *self.project_kv(x)  # [B, H, T, Dh] each
        if cache is not None:
            k, v = cache.update(layer, k, v)  # [B, H, past + T, Dh]
        # A causal mask is only needed over a block of several new positions, which the cache
        # contract allows only from position 0, so the block is square.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and steps > 1)
        # [B, H, T, Dh] -> [B, T, H, Dh] -> [B, T, D]
        return self.out_proj.call(out.transpose(1, 2).reshape(batch, steps, d_model))

    def _attend_encoder(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        rows, steps, d_model = x.shape
        k, v = kv  # [B, H, S, Dh]
        batch = k.shape[0]
        if rows % batch:
            raise ValueError(f"{rows} query rows do not divide into groups over {batch} key/value rows")
        # [B*G, T, D] -> [B, G*T, H, Dh] -> [B, H, G*T, Dh]: positions attend independently here
        q = self.q_proj.call(x).view(batch, rows // batch * steps, self.num_heads, self.head_dim)
        q = q.transpose(1, 2)
        if q.shape[0] * q.shape[2] > 1:
            # Several query rows: two batched matmuls beat the CPU flash kernel (measured 0.91x
            # at 16 rows, 0.94x with 10 beams, end to end); one row: the flash kernel is faster.
            weights = torch.matmul(q, k.transpose(-1, -2)).mul_(self.head_dim**-0.5)  # [B, H, G*T, S]
            if mask is not None:
                weights = weights.masked_fill(~mask, -float("inf"))
            out = torch.matmul(weights.softmax(dim=-1, dtype=torch.float32).to(v.dtype), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # [B, H, G*T, Dh] -> [B, G*T, H, Dh] -> [B*G, T, D]
        return out.transpose(1, 2).reshape(rows, steps, d_model)
