"""Import Hugging Face Blenderbot checkpoints into :class:`BlenderbotBackbone` by tensor name.

Kept apart from the model: the model knows nothing of checkpoint names. Files and names are
:mod:`model.checkpoint`'s (no Keras there); this module maps them onto the Keras variables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from model.backbone import BlenderbotBackbone
from model.checkpoint import LOGITS_BIAS, SHARED, TIED, Checkpoint, layer_prefix
from model.errors import (
    CheckpointError,
    MissingTensorError,
    TensorShapeError,
    UnexpectedTensorError,
)
from model.keras_backend import keras
from model.layers.attention import CachedMultiHeadAttention
from model.layers.primitives import LayerNorm, Linear
from model.layers.transformer_layers import DecoderLayer, EncoderLayer

logger = logging.getLogger(__name__)

_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")


def weight_map(backbone: BlenderbotBackbone) -> Iterator[tuple[str, keras.Variable]]:
    """Yield (checkpoint tensor name, Keras variable) for every weight of the backbone."""
    c = backbone.config
    yield SHARED, backbone.shared.embeddings
    yield "model.encoder.embed_positions.weight", backbone.encoder_positions.embeddings
    yield "model.decoder.embed_positions.weight", backbone.decoder_positions.embeddings
    yield LOGITS_BIAS, backbone.final_logits_bias
    if c.pre_norm:
        stack_norm = "layer_norm"
        norms = (("encoder", backbone.encoder_final_norm), ("decoder", backbone.decoder_final_norm))
    else:
        stack_norm = "layernorm_embedding"
        norms = (("encoder", backbone.encoder_embedding_norm), ("decoder", backbone.decoder_embedding_norm))
    for stack, norm in norms:
        assert norm is not None  # the variant's pair exists
        yield f"model.{stack}.{stack_norm}.weight", norm.gamma
        yield f"model.{stack}.{stack_norm}.bias", norm.beta
    for i, enc in enumerate(backbone.encoder_layers):
        yield from _layer_weights(layer_prefix("encoder", i), enc)
    for i, dec in enumerate(backbone.decoder_layers):
        yield from _layer_weights(layer_prefix("decoder", i), dec)


def _layer_weights(prefix: str, layer: EncoderLayer | DecoderLayer) -> Iterator[tuple[str, keras.Variable]]:
    linears: list[tuple[str, Linear]] = [
        (f"fc{i + 1}", fc) for i, fc in enumerate((layer.ffn.fc1, layer.ffn.fc2))
    ]
    norms: list[tuple[str, LayerNorm]] = [
        ("self_attn_layer_norm", layer.self_attn_layer_norm),
        ("final_layer_norm", layer.final_layer_norm),
    ]
    attentions: list[tuple[str, CachedMultiHeadAttention]] = [("self_attn", layer.self_attn)]
    if isinstance(layer, DecoderLayer):
        attentions.append(("encoder_attn", layer.encoder_attn))
        norms.append(("encoder_attn_layer_norm", layer.encoder_attn_layer_norm))
    for name, attn in attentions:
        linears += [(f"{name}.{proj}", getattr(attn, proj)) for proj in _ATTN]
    for name, linear in linears:
        yield f"{prefix}.{name}.weight", linear.kernel
        if linear.bias is not None:
            yield f"{prefix}.{name}.bias", linear.bias
    for name, norm in norms:
        yield f"{prefix}.{name}.weight", norm.gamma
        yield f"{prefix}.{name}.bias", norm.beta


def load_weights(backbone: BlenderbotBackbone, checkpoint: Checkpoint, *, kernels: bool = True) -> None:
    """Assign every backbone variable from ``checkpoint``, or raise a named error. ``kernels``
    False: the projections' kernels are checked but not assigned (they are packed as int8
    straight from the checkpoint, :mod:`model.int8`)."""
    state, where = checkpoint.tensors, checkpoint.where
    expected = dict(weight_map(backbone))
    projections = {id(v) for v in projection_kernels(backbone)}
    for name in state:
        if name not in expected and name not in TIED:
            raise UnexpectedTensorError(name, where)
    for name, variable in expected.items():
        tensor = state.get(name)
        if tensor is None:
            raise MissingTensorError(name, where)
        if name == LOGITS_BIAS:
            tensor = tensor.reshape(-1) if tensor.dim() == 2 and tensor.shape[0] == 1 else tensor
        if tuple(tensor.shape) != tuple(variable.shape):
            raise TensorShapeError(name, where, tuple(variable.shape), tuple(tensor.shape))
        if kernels or id(variable) not in projections:
            variable.assign(tensor.to(dtype=variable.value.dtype))
    shared = state[SHARED]
    for tied in TIED:
        if tied in state and not torch.equal(state[tied], shared):
            raise CheckpointError(f"{where}: {tied} differs from {SHARED}; untied heads are not supported")
    logger.info("loaded %d tensors from %s", len(expected), where)


def projection_kernels(backbone: BlenderbotBackbone) -> Iterator[keras.Variable]:
    """The kernel variable of every projection of the encoder and decoder layers."""
    layers: list[EncoderLayer | DecoderLayer] = [*backbone.encoder_layers, *backbone.decoder_layers]
    for layer in layers:
        for linear in _linears(layer):
            yield linear.kernel


def _linears(layer: EncoderLayer | DecoderLayer) -> list[Linear]:
    attentions = [layer.self_attn] + ([layer.encoder_attn] if isinstance(layer, DecoderLayer) else [])
    return [layer.ffn.fc1, layer.ffn.fc2, *(lin for attn in attentions for lin in attn.linears())]
