"""The Detoxify toxicity classifier, run in a thread of its own with checks batched together.

Loading, in that thread:

* ``checkpoint`` and ``config_folder`` configured (offline): Detoxify builds its transformers model
  from ``config.arch.args.model_type`` inside the checkpoint, which names a hub model
  ("bert-base-uncased") and would be fetched from the hub. So a copy of the checkpoint whose
  ``model_type`` points at the local config folder is written once into the data dir and loaded
  with ``huggingface_config_path`` -- no network.
* nothing configured: the checkpoint of ``model`` downloads once into ``data_dir/safety`` (with a
  progress bar) and its base config comes from the Hugging Face hub cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Scores = dict[str, float]


class ClassifierLoadError(Exception):
    pass


def _local_checkpoint(checkpoint: Path, config_folder: Path, cache: Path) -> Path:
    """A copy of ``checkpoint`` whose model_type is the local config folder (made once)."""
    import torch

    if not checkpoint.is_file():
        raise ClassifierLoadError(f"safety.classifier.checkpoint {checkpoint} does not exist")
    if not (config_folder / "config.json").is_file():
        raise ClassifierLoadError(f"safety.classifier.config_folder {config_folder} has no config.json")
    target = cache / f"{checkpoint.stem}.local{checkpoint.suffix}"
    if target.exists() and target.stat().st_mtime >= checkpoint.stat().st_mtime:
        return target
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)  # Detoxify's format is pickled
    try:
        loaded["config"]["arch"]["args"]["model_type"] = str(config_folder.resolve())
    except (KeyError, TypeError):
        raise ClassifierLoadError(
            f"{checkpoint} is not a Detoxify checkpoint (no config.arch.args)"
        ) from None
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    torch.save(loaded, partial)
    partial.replace(target)
    return target


def download_checkpoint(model: str, cache: Path) -> Path:
    """The checkpoint of a Detoxify model type, downloaded once into ``cache``."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[model]
    target = cache / url.rsplit("/", 1)[-1]
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        logger.info("downloading the %s safety classifier into %s", model, cache)
        partial = target.with_suffix(".partial")
        torch.hub.download_url_to_file(url, str(partial), progress=True)
        partial.replace(target)
    return target


OFFLINE_MODEL = "alt-profanity-check"


class AltProfanityCheck:
    """alt-profanity-check's linear model (it ships inside its package: nothing to download), with
    Detoxify's ``predict`` shape: one label, ``profanity``."""

    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError:
            raise ClassifierLoadError(
                "safety.classifier.model alt-profanity-check needs its package: pip install "
                "'blenderd[offline-classifier]' (or alt-profanity-check)"
            ) from None
        self._predict = predict_prob

    def predict(self, texts: Sequence[str]) -> dict[str, list[float]]:
        return {"profanity": [float(p) for p in self._predict(list(texts))]}


def load_classifier(
    *, model: str, checkpoint: Path | None, config_folder: Path | None, device: str, cache: Path
) -> Any:
    """The configured classifier: alt-profanity-check, or one of Detoxify's models."""
    if model == OFFLINE_MODEL:
        return AltProfanityCheck()
    return load_detoxify(
        model=model, checkpoint=checkpoint, config_folder=config_folder, device=device, cache=cache
    )


def load_detoxify(
    *, model: str, checkpoint: Path | None, config_folder: Path | None, device: str, cache: Path
) -> Any:
    from detoxify import Detoxify

    try:
        if checkpoint is not None and config_folder is not None:
            path = _local_checkpoint(checkpoint, config_folder, cache)
            return Detoxify(
                model, checkpoint=str(path), device=device, huggingface_config_path=str(config_folder)
            )
        if checkpoint is not None:
            return Detoxify(model, checkpoint=str(checkpoint), device=device)
        return Detoxify(model, checkpoint=str(download_checkpoint(model, cache)), device=device)
    except ClassifierLoadError:
        raise
    except Exception as exc:
        raise ClassifierLoadError(f"{exc.__class__.__name__}: {exc}") from None


class ToxicityClassifier:
    """Scores texts with Detoxify off the event loop; texts asked for together share one batch."""

    def __init__(self, load: Callable[[], Any], *, max_batch: int = 32, max_wait: float = 0.005) -> None:
        self._load = load
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety")
        self._model: Any = None
        self._pending: list[tuple[str, asyncio.Future[Scores]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batches: deque[int] = deque(maxlen=1000)  # sizes of the most recent batches

    async def start(self) -> None:
        self._model = await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    async def stop(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def score(self, texts: Sequence[str]) -> list[Scores]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._pending.extend(zip(texts, futures, strict=True))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self.batches.append(len(batch))
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, self._predict, [t for t, _ in batch]
            )
            job.add_done_callback(lambda done, batch=batch: _deliver(done, batch))  # type: ignore[misc]

    def _predict(self, texts: list[str]) -> list[Scores]:
        raw = self._model.predict(texts)
        return [
            {
                label: float(values if isinstance(values, float) else values[i])
                for label, values in raw.items()
            }
            for i in range(len(texts))
        ]


def _deliver(done: asyncio.Future[list[Scores]], batch: list[tuple[str, asyncio.Future[Scores]]]) -> None:
    error = done.exception()
    for i, (_, future) in enumerate(batch):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[i])
