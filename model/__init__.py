"""The Blenderbot model: a Keras 3 port on the PyTorch backend.

``model.load(source)`` returns a :class:`Blenderbot`; ``GenerationSettings`` says how to search;
each result is a list of :class:`Hypothesis`, best first.

Keras holds the model, torch computes it. :class:`~model.backbone.BlenderbotBackbone` is a Keras
model (variables with their dtype policy and device, weight tracking, ``get_config`` and
``.keras`` saving), and every layer computes with ``torch.nn.functional`` on its variables'
tensors, called as ``layer.call(...)``: on the torch backend ``keras.ops`` adds about 50 µs per op
and ``Layer.__call__`` about 150 µs per call, and one decoded token of 400M-distill runs ~150 of
them, more than its matmuls cost. This is why the backend must be torch: it is set here, the one
place, before keras is first imported (no other package of the project imports keras), and
checked where Keras is imported (:mod:`model.keras_backend`, which spares it torch.compile's
tracer). Keras and torch are imported only with the model itself: settings, results and the
tokenizer do without them.

The layout, as keras-hub: ``layers/`` (primitives, attention with its KV-cache contract, the
transformer layers), ``backbone.py`` (the network), ``generation.py`` and ``beam_search.py``
(search), ``tokenizer.py``, ``int8.py`` (CPU kernels, packed without Keras), and, apart from
the model, ``checkpoint.py`` (files and tensor names), ``convert.py`` (names onto Keras
variables) and ``hub.py`` (download).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# OpenMP keeps its default wait policy (threads spin briefly between parallel regions, then
# sleep): OMP_WAIT_POLICY=PASSIVE, the default here until 2026-12-02, made each of a decoded
# token's ~150 small ops wake the threads from sleep, and a beam-10 reply of 400M int8 took 4.2 s
# instead of 2.6 s (greedy 1.0 s instead of 0.65 s), with no CPU used while idle either way.

import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import (
    CacheContractError,
    CheckpointError,
    MissingTensorError,
    ModelError,
    TensorShapeError,
    UnexpectedTensorError,
    WeightsUnavailableError,
)
from model.hub import resolve
from model.settings import GenerationSettings, Hypothesis
from model.tokenizer import TokenizerOnly

if TYPE_CHECKING:
    from model.blenderbot import Blenderbot
    from model.devices import DTYPES

logger = logging.getLogger(__name__)

__all__ = [
    "DTYPES",
    "Blenderbot",
    "CacheContractError",
    "CheckpointError",
    "GenerationSettings",
    "Hypothesis",
    "MissingTensorError",
    "ModelError",
    "TensorShapeError",
    "TokenizerOnly",
    "UnexpectedTensorError",
    "WeightsUnavailableError",
    "load",
    "load_tokenizer",
]


def __getattr__(name: str) -> Any:
    """``Blenderbot`` imports keras and torch, ``DTYPES`` torch, so only when first asked for:
    settings, results and the tokenizer (a daemon whose model runs in remote workers) never
    import them."""
    if name == "Blenderbot":
        from model import blenderbot

        return blenderbot.Blenderbot
    if name == "DTYPES":
        from model import devices

        return devices.DTYPES
    raise AttributeError(f"module 'model' has no attribute {name!r}")


def load(
    source: str | Path,
    *,
    device: str = "auto",
    dtype: str = "float32",
    data_dir: str | Path = "data",
    download: bool = True,
    generation: Mapping[str, Any] | None = None,
    candidates: int = 1,
    int8_cache: str | Path | None = None,
) -> Blenderbot:
    """Load a checkpoint folder, or a hub id (downloaded into ``data_dir/models`` when missing).

    ``generation`` and ``candidates`` set how :meth:`Blenderbot.generate` searches by default.
    For int8 the kernels are packed from the checkpoint in a thread started before Keras is
    imported (:class:`model.int8.Packing`): importing Keras (0.3-0.6 s, :mod:`model.keras_backend`),
    reading the tokenizer and building the backbone hold the GIL on one core, packing uses the
    other cores meanwhile. ``int8_cache``: a folder where the kernels' int8 values are kept for
    the next load (:mod:`model.int8_cache`; the daemon uses ``data_dir/int8``); None: quantised
    at every load.
    """
    from model.checkpoint import Checkpoint
    from model.config import BlenderbotConfig
    from model.devices import pick_device, pick_dtype
    from model.int8 import Packing, sequence_engine

    folder = resolve(str(source), Path(data_dir), download=download)
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    config = BlenderbotConfig.from_folder(folder)
    checkpoint = Checkpoint.read(folder)
    packing = None
    if dtype == "int8":
        from model.int8_cache import KernelCache

        directory = None if int8_cache is None else Path(int8_cache)
        cache = None if directory is None else KernelCache.for_checkpoint(directory, folder, checkpoint.files)
        packing = Packing(config, checkpoint.linear, sequence_engine=sequence_engine(), cache=cache)
    importing = time.perf_counter()
    try:
        from model.blenderbot import Blenderbot  # Keras: 0.3-0.5 s on a first import
    except BaseException:
        if packing is not None:
            packing.stop()
        raise
    logger.debug(
        "imported the Keras model in %.2f s (torch._dynamo %s)",
        time.perf_counter() - importing,
        "imported as well" if "torch._dynamo" in sys.modules else "not imported",
    )
    try:
        return Blenderbot(
            folder,
            config=config,
            checkpoint=checkpoint,
            device=device,
            dtype=dtype,
            packing=packing,
            generation=generation,
            candidates=candidates,
        )
    finally:
        # This frame can outlive the call, with the locals it has when it returns: torch.fx.wrap,
        # run while the imports above load torch, holds its own frame in a local, a cycle that
        # keeps the whole stack it ran in, this frame included, until the cyclic collector runs.
        # `python -m bot` pauses the collector while it starts, then freezes what the start made
        # (bot.collection): the checkpoint stayed mapped for good, 1.4 GB of the first start's
        # 2.6 GB resident (400M-distill, int8).
        del checkpoint, packing


def load_tokenizer(
    source: str | Path, *, data_dir: str | Path = "data", download: bool = True
) -> TokenizerOnly:
    """The tokenizer of a checkpoint folder or hub id, without its weights (downloading only the
    config and tokenizer files when missing)."""
    folder = resolve(str(source), Path(data_dir), download=download, weights=False)
    return TokenizerOnly.from_folder(folder)
