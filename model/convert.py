"""Import Hugging Face Blenderbot checkpoints into :class:`BlenderbotBackbone` by tensor name.

Kept apart from the model: the model knows nothing of checkpoint names. ``model.safetensors``
is preferred; ``pytorch_model.bin`` is read with ``weights_only=True``. Tensors that transformers
ties to ``model.shared.weight`` (the per-stack ``embed_tokens`` and ``lm_head``) may be absent;
when present they must equal it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import keras
import torch

from model.backbone import BlenderbotBackbone
from model.errors import (
    CheckpointError,
    MissingTensorError,
    TensorShapeError,
    UnexpectedTensorError,
)
from model.layers.attention import CachedMultiHeadAttention
from model.layers.primitives import LayerNorm, Linear
from model.layers.transformer_layers import DecoderLayer, EncoderLayer

logger = logging.getLogger(__name__)

_TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")


def weight_map(backbone: BlenderbotBackbone) -> Iterator[tuple[str, keras.Variable]]:
    """Yield (checkpoint tensor name, Keras variable) for every weight of the backbone."""
    c = backbone.config
    yield "model.shared.weight", backbone.shared.embeddings
    yield "model.encoder.embed_positions.weight", backbone.encoder_positions.embeddings
    yield "model.decoder.embed_positions.weight", backbone.decoder_positions.embeddings
    yield "final_logits_bias", backbone.final_logits_bias
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
        yield from _layer_weights(f"model.encoder.layers.{i}", enc)
    for i, dec in enumerate(backbone.decoder_layers):
        yield from _layer_weights(f"model.decoder.layers.{i}", dec)


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


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Load every tensor of a checkpoint folder, on the CPU: ``model.safetensors``, shards listed in
    ``model.safetensors.index.json``, ``pytorch_model.bin`` or its shards (in that order of preference)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.exists():
            continue
        if not name.endswith(".index.json"):
            return _read_file(path), path
        state: dict[str, torch.Tensor] = {}
        for shard in _shards(path):
            state.update(_read_file(folder / shard))
        return state, path
    raise CheckpointError(f"{folder} has neither model.safetensors nor pytorch_model.bin (or their shards)")


def _shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index} cannot be read as a shard index: {exc}") from None
    for shard in shards:
        if "/" in shard or "\\" in shard or not (index.parent / shard).is_file():
            raise CheckpointError(f"{index} names the shard {shard!r}, which is not in the folder")
    return shards


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} cannot be read: {exc}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"{path} cannot be read: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def _normalise(name: str) -> str:
    # Some older checkpoints store the base model without the "model." prefix.
    if name.startswith(("encoder.", "decoder.", "shared.")):
        return "model." + name
    return name


def load_weights(backbone: BlenderbotBackbone, folder: Path) -> None:
    """Assign every backbone variable from the checkpoint in ``folder``, or raise a named error."""
    raw, path = read_state_dict(folder)
    state = {_normalise(k): v for k, v in raw.items()}
    where = str(path)
    expected = dict(weight_map(backbone))
    for name in state:
        if name not in expected and name not in _TIED:
            raise UnexpectedTensorError(name, where)
    if "model.shared.weight" not in state:
        for tied in _TIED:  # transformers saves only one copy of a tied tensor, possibly another name
            if tied in state:
                state["model.shared.weight"] = state[tied]
                break
    for name, variable in expected.items():
        tensor = state.get(name)
        if tensor is None:
            raise MissingTensorError(name, where)
        if name == "final_logits_bias":
            tensor = tensor.reshape(-1) if tensor.dim() == 2 and tensor.shape[0] == 1 else tensor
        if tuple(tensor.shape) != tuple(variable.shape):
            raise TensorShapeError(name, where, tuple(variable.shape), tuple(tensor.shape))
        variable.assign(tensor.to(dtype=variable.value.dtype))
    shared = state["model.shared.weight"]
    for tied in _TIED:
        if tied in state and not torch.equal(state[tied], shared):
            raise CheckpointError(
                f"{where}: {tied} differs from model.shared.weight; untied heads are not supported"
            )
    logger.info("loaded %d tensors from %s", len(expected), where)
