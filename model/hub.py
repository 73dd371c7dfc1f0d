"""Find a checkpoint folder: a local path, a copy in the data dir, or a download from the hub."""

from __future__ import annotations

import logging
from pathlib import Path

from model.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/blenderbot-400M-distill"
_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


def cache_folder(data_dir: Path, repo_id: str) -> Path:
    return data_dir / "models" / repo_id.replace("/", "--")


def _complete(folder: Path) -> bool:
    has_weights = (folder / "model.safetensors").exists() or (folder / "pytorch_model.bin").exists()
    return (folder / "config.json").exists() and has_weights


def resolve(source: str, data_dir: Path, *, download: bool = True) -> Path:
    """Return a local checkpoint folder for ``source`` (a folder path or a hub id)."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise WeightsUnavailableError(
            f"model source {source!r} is neither a folder nor a hub id like 'org/name'"
        )
    folder = cache_folder(data_dir, source)
    if _complete(folder):
        return folder
    if not download:
        raise WeightsUnavailableError(_how_to_get(source, folder, "it has not been downloaded yet"))
    return fetch(source, folder)


def fetch(repo_id: str, folder: Path) -> Path:
    """Download the files a Blenderbot checkpoint needs, with huggingface_hub's progress bars."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        files = set(HfApi().list_repo_files(repo_id))
        weights = "model.safetensors" if "model.safetensors" in files else "pytorch_model.bin"
        logger.info("downloading %s into %s", repo_id, folder)
        snapshot_download(repo_id, local_dir=str(folder), allow_patterns=[*_FILES, weights])
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise WeightsUnavailableError(_how_to_get(repo_id, folder, f"the download failed ({exc})")) from None
    if not _complete(folder):
        raise WeightsUnavailableError(_how_to_get(repo_id, folder, "the download is incomplete"))
    return folder


def _how_to_get(repo_id: str, folder: Path, why: str) -> str:
    return (
        f"model weights for {repo_id} are not available: {why}. Either give this machine internet access "
        f"and run `python -m bot download`, or copy a checkpoint folder (config.json, model.safetensors or "
        f"pytorch_model.bin, and tokenizer files) to {folder}, "
        "or set model.source in config.yaml to such a folder"
    )
