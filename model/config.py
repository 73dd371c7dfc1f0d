"""The architecture and generation defaults of a checkpoint, read from its config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import CheckpointError

_VARIANTS = {
    "blenderbot": "blenderbot",
    "blenderbot-small": "blenderbot_small",
    "blenderbot_small": "blenderbot_small",
}


@dataclass(frozen=True)
class BlenderbotConfig:
    """Every dimension of the network. ``variant`` picks the layer-norm layout:

    * ``blenderbot`` (400M-distill, 1B-distill, 3B): pre-LayerNorm layers, a final
      layer_norm after the encoder and the decoder stacks, no layernorm_embedding.
    * ``blenderbot_small`` (90M): post-LayerNorm layers, layernorm_embedding, no final norm.
    """

    variant: str
    vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_position_embeddings: int
    scale_embedding: bool
    activation_function: str
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    decoder_start_token_id: int
    forced_eos_token_id: int | None
    layer_norm_epsilon: float = 1e-5

    @property
    def pre_norm(self) -> bool:
        return self.variant == "blenderbot"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = "config.json") -> BlenderbotConfig:
        model_type = raw.get("model_type")
        if model_type not in _VARIANTS:
            raise CheckpointError(
                f"{where}: model_type is {model_type!r}; expected 'blenderbot' or 'blenderbot-small'"
            )
        if raw.get("activation_function", "gelu") != "gelu":
            raise CheckpointError(
                f"{where}: activation_function {raw['activation_function']!r} is not 'gelu'"
            )

        def need(key: str) -> Any:
            if key not in raw:
                raise CheckpointError(f"{where}: missing key {key!r}")
            return raw[key]

        forced = raw.get("forced_eos_token_id", 2)
        if isinstance(forced, list):
            forced = forced[0] if forced else None
        eos = need("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        return cls(
            variant=_VARIANTS[model_type],
            vocab_size=int(need("vocab_size")),
            d_model=int(need("d_model")),
            encoder_layers=int(need("encoder_layers")),
            decoder_layers=int(need("decoder_layers")),
            encoder_attention_heads=int(need("encoder_attention_heads")),
            decoder_attention_heads=int(need("decoder_attention_heads")),
            encoder_ffn_dim=int(need("encoder_ffn_dim")),
            decoder_ffn_dim=int(need("decoder_ffn_dim")),
            max_position_embeddings=int(need("max_position_embeddings")),
            scale_embedding=bool(raw.get("scale_embedding", False)),
            activation_function="gelu",
            pad_token_id=int(raw.get("pad_token_id", 0)),
            bos_token_id=int(raw.get("bos_token_id", 1)),
            eos_token_id=int(eos),
            decoder_start_token_id=int(raw.get("decoder_start_token_id", 1)),
            forced_eos_token_id=None if forced is None else int(forced),
        )

    @classmethod
    def from_folder(cls, folder: Path) -> BlenderbotConfig:
        return cls.from_dict(read_json(folder / "config.json"), where=str(folder / "config.json"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data
