"""The Blenderbot encoder-decoder as a Keras model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from model import int8
from model.config import BlenderbotConfig
from model.int8 import Int8Weight, linear_int8, packed_bytes
from model.keras_backend import keras
from model.layers.kv_cache import KVCache
from model.layers.primitives import Embedding, LayerNorm, Linear
from model.layers.transformer_layers import DecoderLayer, EncoderLayer

CrossKV = list[tuple[torch.Tensor, torch.Tensor]]


@keras.saving.register_keras_serializable(package="blenderd")
class BlenderbotBackbone(keras.Model):
    """Shared token embedding, separate learned position tables (indexed from the past length, no
    offset), the encoder and decoder stacks, and an lm head tied to the shared embedding plus
    ``final_logits_bias``.

    ``call`` is the teacher-forced Keras entry point. Generation uses the stages separately:
    :meth:`encode` once per batch, :meth:`cross_kv` once per batch, then :meth:`decode` with a
    :class:`KVCache` one position at a time.
    """

    def __init__(self, config: BlenderbotConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dtype = kwargs.get("dtype")
        c = config
        self.config = c
        self.embed_scale = math.sqrt(c.d_model) if c.scale_embedding else 1.0
        self.shared = Embedding(c.vocab_size, c.d_model, dtype=dtype, name="shared")
        self.encoder_positions = Embedding(c.max_position_embeddings, c.d_model, dtype=dtype, name="enc_pos")
        self.decoder_positions = Embedding(c.max_position_embeddings, c.d_model, dtype=dtype, name="dec_pos")
        self.encoder_layers: list[EncoderLayer] = [
            EncoderLayer(
                c.d_model,
                c.encoder_attention_heads,
                c.encoder_ffn_dim,
                pre_norm=c.pre_norm,
                dtype=dtype,
                name=f"encoder_layer_{i}",
            )
            for i in range(c.encoder_layers)
        ]
        self.decoder_layers: list[DecoderLayer] = [
            DecoderLayer(
                c.d_model,
                c.decoder_attention_heads,
                c.decoder_ffn_dim,
                pre_norm=c.pre_norm,
                dtype=dtype,
                name=f"decoder_layer_{i}",
            )
            for i in range(c.decoder_layers)
        ]

        # Blenderbot (pre-LayerNorm layers): a final norm after each stack. BlenderbotSmall
        # (post-LayerNorm layers): a norm on each stack's embeddings. Only the variant's pair exists.
        def norm(name: str, used: bool) -> LayerNorm | None:
            return LayerNorm(c.d_model, dtype=dtype, name=name) if used else None

        self.encoder_final_norm = norm("encoder_final_norm", c.pre_norm)
        self.decoder_final_norm = norm("decoder_final_norm", c.pre_norm)
        self.encoder_embedding_norm = norm("encoder_embedding_norm", not c.pre_norm)
        self.decoder_embedding_norm = norm("decoder_embedding_norm", not c.pre_norm)
        self.final_logits_bias = self.add_weight(
            shape=(c.vocab_size,), initializer="zeros", name="final_logits_bias"
        )
        self._lm_head_int8: Int8Weight | None = None  # set by use_int8()
        self.built = True

    def get_config(self) -> dict[str, Any]:
        """The network's dimensions (``config``), so ``keras.saving.load_model`` rebuilds it."""
        return {"name": self.name, "dtype": self.dtype_policy.name, "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BlenderbotBackbone:
        values = dict(config)
        return cls(BlenderbotConfig(**values.pop("config")), **values)

    def quantize_int8(self, *, sequence_engine: str | None = "auto") -> None:
        """Pack int8 kernels from this backbone's own float variables and use them (CPU; one-way).
        :func:`model.load` packs them straight from the checkpoint instead, while Keras imports.

        ``sequence_engine``: the engine for the kernels that read whole sequences ("auto":
        :func:`~model.int8.sequence_engine`, oneDNN on CPUs with AMX; None: fbgemm like the rest).
        """
        engine = int8.sequence_engine() if sequence_engine == "auto" else sequence_engine
        groups = int8.kernel_groups(self.config)
        self.use_int8(int8.pack_groups(groups, self.projection, sequence_engine=engine))

    def projection(self, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float kernel and bias of a projection named as in :func:`model.int8.kernel_groups`."""
        if path == "lm_head":
            return self.shared.embeddings.value, self.final_logits_bias.value
        stack, index, *attributes = path.split(".")
        layers: list[Any] = self.encoder_layers if stack == "encoder" else self.decoder_layers
        layer = layers[int(index)]
        for attribute in attributes:
            layer = getattr(layer, attribute)
        linear: Linear = layer
        return linear.tensors()

    def use_int8(self, kernels: Mapping[str, Int8Weight]) -> None:
        """Compute with the packed int8 kernels of :func:`model.int8.kernel_groups`, by key; every
        projection's float kernel is released. The embedding table stays float32 for the lookups;
        the lm head gets its own int8 copy (vocabulary x d_model bytes), as the projection that
        reads the most weights per step."""
        for i, enc in enumerate(self.encoder_layers):
            enc.use_int8(kernels, f"encoder.{i}")
        for i, dec in enumerate(self.decoder_layers):
            dec.use_int8(kernels, f"decoder.{i}")
        self._lm_head_int8 = kernels["lm_head"]

    @property
    def int8_bytes(self) -> int:
        """Bytes of the packed int8 kernels (0 before :meth:`use_int8`)."""
        layers = sum(layer.int8_bytes for layer in self._stacked_layers())
        return layers + packed_bytes(self._lm_head_int8)

    def _stacked_layers(self) -> list[EncoderLayer | DecoderLayer]:
        return [*self.encoder_layers, *self.decoder_layers]

    @property
    def torch_device(self) -> torch.device:
        return self.shared.embeddings.value.device

    def encode(self, input_ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``input_ids: [B, S]``, ``mask``: bool ``[B, 1, 1, S]`` or None -> ``[B, S, D]``."""
        steps = input_ids.shape[1]
        positions = torch.arange(steps, device=input_ids.device)
        h = self.shared.call(input_ids) * self.embed_scale + self.encoder_positions.call(positions)
        if self.encoder_embedding_norm is not None:
            h = self.encoder_embedding_norm.call(h)
        for layer in self.encoder_layers:
            h = layer.call(h, mask)
        if self.encoder_final_norm is not None:
            h = self.encoder_final_norm.call(h)
        return h

    def cross_kv(self, encoded: torch.Tensor) -> CrossKV:
        """Cross-attention keys and values of every decoder layer, ``[B, H, S, Dh]`` each."""
        return [layer.encoder_attn.project_kv(encoded) for layer in self.decoder_layers]

    def decode(
        self,
        ids: torch.Tensor,
        *,
        start: int,
        cross_kv: CrossKV,
        cross_mask: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        """``ids: [B, T]`` at decoder positions ``start .. start+T`` -> hidden states ``[B, T, D]``."""
        steps = ids.shape[1]
        positions = torch.arange(start, start + steps, device=ids.device)
        h = self.shared.call(ids) * self.embed_scale
        if self.decoder_embedding_norm is not None:
            h = self.decoder_embedding_norm.call(h)  # before the positions are added, as ParlAI
        h = h + self.decoder_positions.call(positions)
        for i, layer in enumerate(self.decoder_layers):
            h = layer.call(h, cross_kv=cross_kv[i], cross_mask=cross_mask, cache=cache, layer=i)
        if cache is not None:
            cache.advance(steps)
        if self.decoder_final_norm is not None:
            h = self.decoder_final_norm.call(h)
        return h

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden: [..., D]`` -> logits ``[..., V]`` in float32."""
        if self._lm_head_int8 is not None:
            return linear_int8(hidden.float(), self._lm_head_int8)
        logits = F.linear(hidden, self.shared.embeddings.value, self.final_logits_bias.value)
        return logits.float()

    def call(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]``.

        ``inputs`` holds ``input_ids``, ``attention_mask`` and ``decoder_input_ids``.
        """
        input_ids = inputs["input_ids"]
        mask = encoder_mask(inputs["attention_mask"])
        encoded = self.encode(input_ids, mask)
        hidden = self.decode(
            inputs["decoder_input_ids"], start=0, cross_kv=self.cross_kv(encoded), cross_mask=mask, cache=None
        )
        return self.lm_logits(hidden)


def encoder_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """``[B, S]`` of 0/1 -> bool ``[B, 1, 1, S]`` for attention over encoder positions.

    None when nothing is padded: attention without a mask takes the faster kernels.
    """
    if bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]
