"""A loaded Blenderbot: tokenizer, Keras backbone and generation behind one small surface."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.backbone import BlenderbotBackbone
from model.checkpoint import Checkpoint
from model.config import BlenderbotConfig
from model.convert import load_weights
from model.generation import generate
from model.heap import release_freed_memory
from model.int8 import Packing
from model.keras_backend import keras
from model.settings import GenerationSettings, Hypothesis
from model.tokenizer import BlenderbotTokenizer

logger = logging.getLogger(__name__)


class Blenderbot:
    """Build it with :func:`model.load`. Build and use it in one thread: Keras keeps its dtype
    policy per thread and torch its grad mode per thread."""

    def __init__(
        self,
        folder: Path,
        *,
        config: BlenderbotConfig,
        checkpoint: Checkpoint,
        device: str,
        dtype: str,
        packing: Packing | None = None,
        generation: Mapping[str, Any] | None = None,
        candidates: int = 1,
    ) -> None:
        """Built by :func:`model.load`, which picks ``device`` and ``dtype``, reads ``config`` and
        ``checkpoint`` and, for int8, starts the ``packing`` of its kernels before Keras is
        imported. ``generation`` overrides the checkpoint's generation defaults for
        :meth:`generate`, which returns up to ``candidates`` hypotheses per input
        (:meth:`GenerationSettings.for_replies`)."""
        if (dtype == "int8") != (packing is not None):
            raise ValueError("int8, and only int8, needs the packing of its kernels (model.load starts it)")
        self.folder = folder
        self.device = device
        self.dtype = dtype
        self.config = config
        self.tokenizer = BlenderbotTokenizer.from_folder(folder, self.config)
        self.default_settings = GenerationSettings.from_checkpoint(folder)
        self.reply_settings = self.default_settings.for_replies(generation or {}, candidates)
        try:
            with keras.device(self.device):
                keras_dtype = "float32" if dtype == "int8" else dtype
                # int8: the float kernels are never filled (nor, allocated lazily, touched)
                self.backbone = BlenderbotBackbone(self.config, dtype=keras_dtype, name="blenderbot")
                load_weights(self.backbone, checkpoint, kernels=packing is None)
                if packing is not None:
                    self.backbone.use_int8(packing.result())
                    release_freed_memory()
        except BaseException:
            if packing is not None:
                packing.stop()
            raise
        logger.info(
            "model %s ready on %s (%s): %d decoder layers, d_model %d, context %d tokens",
            folder.name,
            self.device,
            dtype,
            self.config.decoder_layers,
            self.config.d_model,
            self.max_positions,
        )

    @property
    def max_positions(self) -> int:
        """The longest encoder input (and decoder output) the position tables allow."""
        return self.config.max_position_embeddings

    def _tensor(self, rows: Sequence[Sequence[int]] | np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.backbone.torch_device)

    def logits(
        self,
        input_ids: Sequence[Sequence[int]] | np.ndarray,
        decoder_input_ids: Sequence[Sequence[int]] | np.ndarray,
        attention_mask: Sequence[Sequence[int]] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Teacher-forced logits, float32 ``[batch, target_len, vocab]``."""
        ids = self._tensor(input_ids)
        mask = torch.ones_like(ids) if attention_mask is None else self._tensor(attention_mask)
        with torch.inference_mode():
            out = self.backbone.call(
                {
                    "input_ids": ids,
                    "attention_mask": mask,
                    "decoder_input_ids": self._tensor(decoder_input_ids),
                }
            )
        return out.cpu().numpy()

    def generate(
        self,
        inputs: Sequence[Sequence[int]],
        settings: GenerationSettings | None = None,
        *,
        use_cache: bool = True,
    ) -> list[list[Hypothesis]]:
        """For each input id list, its hypotheses best first (``settings.num_return`` of them);
        ``settings`` default to :attr:`reply_settings`. Lengths are capped at the position limit."""
        settings = settings or self.reply_settings
        rows = [list(x) for x in inputs]
        if not rows:
            return []
        for i, row in enumerate(rows):
            if not row:
                raise ValueError(f"input {i} is empty")
            if len(row) > self.max_positions:
                raise ValueError(
                    f"input {i} has {len(row)} tokens; the model takes at most {self.max_positions}"
                )
        if settings.max_length > self.max_positions:
            settings = settings.with_overrides(max_length=self.max_positions)
        with torch.inference_mode():
            ranked = generate(self.backbone, rows, settings, use_cache=use_cache)
        return [
            [Hypothesis(tokens=ids, text=self.tokenizer.decode(ids), score=score) for ids, score in hyps]
            for hyps in ranked
        ]
