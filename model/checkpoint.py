"""Checkpoint files and tensor names (torch and safetensors only, no Keras).

``model.safetensors`` is preferred, then its shards, then ``pytorch_model.bin`` (read with
``weights_only=True``) or its shards. Tensors that transformers ties to ``model.shared.weight``
(the per-stack ``embed_tokens`` and ``lm_head``) may be absent; when present they must equal it.
safetensors files are memory-mapped: a tensor is read from the page cache when first used; so are
``pytorch_model.bin`` files in torch's zip format (every ``torch.save`` since torch 1.6), which
otherwise would be read whole into new memory first (400M-distill's 1.46 GB: 1.7-2.0 s, 0.9 s of
it page faults, against 1.0-1.2 s mapped, torch's import included).

Kept apart from the model, which knows nothing of checkpoint names: :mod:`model.convert` maps
them onto the Keras variables, :mod:`model.int8` packs int8 kernels straight from them (while
Keras is still being imported).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from model.errors import CheckpointError, MissingTensorError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
SHARED = "model.shared.weight"
TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
LOGITS_BIAS = "final_logits_bias"


def layer_prefix(stack: str, index: int) -> str:
    """``("decoder", 3)`` -> ``model.decoder.layers.3``."""
    return f"model.{stack}.layers.{index}"


@dataclass(frozen=True)
class Checkpoint:
    """Every tensor of a checkpoint folder by its normalised name (``model.shared.weight``
    present, whichever tied name held it), and the file they came from (for error messages)."""

    tensors: dict[str, torch.Tensor]
    where: str
    files: list[Path]  # the weight files read (the shards, for an index)

    @classmethod
    def read(cls, folder: Path) -> Checkpoint:
        raw, path, files = read_state_dict(folder)
        tensors = {_normalise(k): v for k, v in raw.items()}
        if SHARED not in tensors:
            for tied in TIED:  # transformers saves only one copy of a tied tensor, possibly another name
                if tied in tensors:
                    tensors[SHARED] = tensors[tied]
                    break
        return cls(tensors, str(path), files)

    def linear(self, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kernel ``[out, in]`` and bias (None where the checkpoint has none) of a projection
        named as in :func:`model.int8.kernel_groups`: ``decoder.3.self_attn.q_proj``,
        ``encoder.0.ffn.fc1``, or ``lm_head`` (the shared embedding and ``final_logits_bias``)."""
        if path == "lm_head":
            kernel_name, bias_name = SHARED, LOGITS_BIAS
        else:
            stack, index, *rest = path.split(".")
            base = f"{layer_prefix(stack, int(index))}.{'.'.join(p for p in rest if p != 'ffn')}"
            kernel_name, bias_name = f"{base}.weight", f"{base}.bias"
        kernel = self.tensors.get(kernel_name)
        if kernel is None:
            raise MissingTensorError(kernel_name, self.where)
        bias = self.tensors.get(bias_name)
        return kernel, None if bias is None else bias.reshape(-1)


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], Path, list[Path]]:
    """Load every tensor of a checkpoint folder, on the CPU: ``model.safetensors``, shards listed in
    ``model.safetensors.index.json``, ``pytorch_model.bin`` or its shards (in that order of
    preference). Returns the tensors, the file named in errors, and the weight files read."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.exists():
            continue
        if not name.endswith(".index.json"):
            return _read_file(path), path, [path]
        state: dict[str, torch.Tensor] = {}
        files = [folder / shard for shard in _shards(path)]
        for shard in files:
            state.update(_read_file(shard))
        return state, path, files
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
        # mmap needs the zip format; older files (torch.save before torch 1.6) are read whole
        mapped = zipfile.is_zipfile(path)
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mapped)
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
