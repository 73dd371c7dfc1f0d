"""The Detoxify toxicity classifier, run in a thread of its own with checks batched together.

Detoxify builds its transformers model from ``config.arch.args.model_type`` inside the checkpoint,
which names a hub model ("bert-base-uncased") and would be asked of the hub at every load. So the
classifier is always loaded from a checkpoint whose ``model_type`` is a local folder holding that
base model's config and tokenizer files (:func:`_offline_checkpoint`), with
``huggingface_config_path``: once it is on disk, no start asks the network for anything.

* ``checkpoint`` and ``config_folder`` configured (offline): a copy of the checkpoint pointing at
  the config folder is written once into the data dir.
* nothing configured: the checkpoint of ``model`` downloads once into ``data_dir/safety`` (with a
  progress bar), the base model's config and tokenizer files (no weights) into
  ``data_dir/safety/<base model>``, taken from the Hugging Face cache when an earlier version left
  them there, and the downloaded checkpoint is made to point at them.

A ``.base`` file beside the checkpoint records the folder it points at; a moved data dir or
config folder makes it point again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Scores = dict[str, float]

# What transformers needs of a base model to build the classifier and its tokenizer (no weights).
BASE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class ClassifierLoadError(Exception):
    pass


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".base")


def _points_at(target: Path) -> Path | None:
    """The base folder ``target`` was made to point at, when it did and the folder is there."""
    try:
        base = Path(_marker(target).read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return base if target.is_file() and (base / "config.json").is_file() else None


def _offline_checkpoint(checkpoint: Path, target: Path, base: Callable[[str], Path]) -> tuple[Path, Path]:
    """(``target``, its base folder): ``checkpoint`` with its ``model_type`` set to
    ``base(name of model_type)``, a local folder (absolute), written to a temporary name and
    renamed; then its ``.base`` marker."""
    import torch

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)  # Detoxify's format is pickled
    try:
        args = loaded["config"]["arch"]["args"]
        folder = base(Path(str(args["model_type"])).name).resolve()
    except (KeyError, TypeError):
        raise ClassifierLoadError(
            f"{checkpoint} is not a Detoxify checkpoint (no config.arch.args.model_type)"
        ) from None
    args["model_type"] = str(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # daemons sharing a data dir
    torch.save(loaded, partial)
    partial.replace(target)
    _marker(target).write_text(str(folder) + "\n", encoding="utf-8")
    return target, folder


def _local_checkpoint(checkpoint: Path, config_folder: Path, cache: Path) -> tuple[Path, Path]:
    """A copy of ``checkpoint`` pointing at the local config folder (made once), and that folder."""
    if not checkpoint.is_file():
        raise ClassifierLoadError(f"safety.classifier.checkpoint {checkpoint} does not exist")
    if not (config_folder / "config.json").is_file():
        raise ClassifierLoadError(f"safety.classifier.config_folder {config_folder} has no config.json")
    target = cache / f"{checkpoint.stem}.local{checkpoint.suffix}"
    base = _points_at(target)
    if base == config_folder.resolve() and target.stat().st_mtime >= checkpoint.stat().st_mtime:
        return target, base
    return _offline_checkpoint(checkpoint, target, lambda _: config_folder)


def download_checkpoint(model: str, cache: Path) -> tuple[Path, Path]:
    """The checkpoint of a Detoxify model type, downloaded once into ``cache``, pointing at its
    base model's files, downloaded once into ``cache/<base model>``; and that folder."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[model]
    target = cache / url.rsplit("/", 1)[-1]
    base = _points_at(target)
    if base is not None and base.parent == cache.resolve():
        return target, base
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        logger.info("downloading the %s safety classifier into %s", model, cache)
        partial = target.with_suffix(".partial")
        torch.hub.download_url_to_file(url, str(partial), progress=True)
        partial.replace(target)
    return _offline_checkpoint(target, target, lambda name: download_base(name, cache / name))


def download_base(repo_id: str, folder: Path) -> Path:
    """The config and tokenizer files of the hub model ``repo_id`` in ``folder``: copied from the
    Hugging Face cache when they are there (no network), else downloaded once."""
    from huggingface_hub import snapshot_download

    from model.errors import WeightsUnavailableError
    from model.hub import probe

    if (folder / "config.json").is_file():
        return folder
    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not in the cache (huggingface_hub raises its own LocalEntryNotFoundError)
        cached = None
    if cached is not None and (cached / "config.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name in BASE_FILES:
            if (cached / name).is_file():
                shutil.copyfile(cached / name, folder / name)  # the cache's files are links
        return folder
    try:
        probe(repo_id)
        logger.info("downloading the safety classifier's base model %s into %s", repo_id, folder)
        snapshot_download(repo_id, local_dir=str(folder), allow_patterns=list(BASE_FILES))
    except WeightsUnavailableError as exc:
        raise ClassifierLoadError(f"its base model {repo_id} cannot be downloaded: {exc}") from None
    except Exception as exc:  # the network went away mid-download (huggingface_hub raises httpx errors)
        raise ClassifierLoadError(
            f"its base model {repo_id} cannot be downloaded ({exc.__class__.__name__}: {exc})"
        ) from None
    if not (folder / "config.json").is_file():
        raise ClassifierLoadError(f"the hub's {repo_id} has no config.json")
    return folder


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
            path, base = _local_checkpoint(checkpoint, config_folder, cache)
        elif checkpoint is not None:  # its model_type must be a folder (or hub access at every load)
            return Detoxify(model, checkpoint=str(checkpoint), device=device)
        else:
            path, base = download_checkpoint(model, cache)
        return Detoxify(model, checkpoint=str(path), device=device, huggingface_config_path=str(base))
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
