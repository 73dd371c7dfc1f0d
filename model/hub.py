"""Find a checkpoint folder: a local path, a copy in the data dir, or a download from the hub."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from model.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 8.0  # seconds: a hub that does not answer by then is reported, not retried
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
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


_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _complete(folder: Path, weights: bool = True) -> bool:
    if not (folder / "config.json").exists():
        return False
    if not weights:  # the tokenizer's files only
        return (folder / "tokenizer.json").exists() or (folder / "vocab.json").exists()
    return any((folder / name).exists() for name in _WEIGHTS)


def is_hub_id(source: str) -> bool:
    """``org/name``; anything else (``./x``, ``~/x``, ``/x``, ``a/b/c``, a bare name) is a folder."""
    return bool(_HUB_ID.match(source))


def resolve(source: str, data_dir: Path, *, download: bool = True, weights: bool = True) -> Path:
    """Return a local checkpoint folder for ``source`` (a folder path or a hub id); without
    ``weights``, one with the config and tokenizer files is enough (and all that is downloaded)."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    if not is_hub_id(source) or local.exists():
        where = local.resolve()
        what = "is not a folder" if local.exists() else "folder not found"
        raise WeightsUnavailableError(
            f"model.source: {what}: {where} (copy a checkpoint folder there, with config.json, "
            "model.safetensors or pytorch_model.bin and the tokenizer files, or set model.source to a hub "
            "id like facebook/blenderbot-400M-distill)"
        )
    folder = cache_folder(data_dir, source)
    if _complete(folder, weights):
        return folder
    if not download:
        raise WeightsUnavailableError(_how_to_get(source, folder, "downloading is off here"))
    return fetch(source, folder, weights=weights)


def probe(repo_id: str) -> None:
    """One request to the hub, with a short timeout: raises with the reason when it cannot be reached
    or does not have ``repo_id``. huggingface_hub retries connection errors with backoff for half a
    minute, which is right mid-download and wrong when the machine simply has no network."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    if constants.HF_HUB_OFFLINE:
        raise WeightsUnavailableError("HF_HUB_OFFLINE is set, so nothing is downloaded")
    url = f"{constants.ENDPOINT}/api/models/{repo_id}"
    try:
        response = get_session().get(url, headers=build_hf_headers(), timeout=PROBE_TIMEOUT)
    except Exception as exc:  # httpx's transport errors: DNS failure, refused, timeout, proxy
        raise WeightsUnavailableError(
            f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached: {_reason(exc)}"
        ) from None
    if response.status_code in (401, 403, 404):
        raise WeightsUnavailableError(
            f"the Hugging Face hub has no public model {repo_id!r} (HTTP {response.status_code}); "
            "if model.source is meant as a folder, write it as ./" + repo_id
        )
    if response.status_code >= 400:
        raise WeightsUnavailableError(f"the Hugging Face hub answered HTTP {response.status_code}")


def _reason(exc: BaseException) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or str(exc) or cause.__class__.__name__
    return text.splitlines()[0]


def fetch(repo_id: str, folder: Path, *, weights: bool = True) -> Path:
    """Download the files a Blenderbot checkpoint needs (``weights``: with its weights), with
    huggingface_hub's progress bars."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        probe(repo_id)
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(_how_to_get(repo_id, folder, str(exc))) from None
    try:
        patterns = list(_FILES)
        if weights:
            files = set(HfApi().list_repo_files(repo_id))
            tensors = next((name for name in _WEIGHTS if name in files), "pytorch_model.bin")
            patterns.append(tensors)
            if tensors.endswith(".index.json"):  # a sharded checkpoint: the index and its shards
                stem = tensors.removesuffix(".index.json").rsplit(".", 1)
                patterns.append(f"{stem[0]}-*.{stem[1]}")
        logger.info("downloading %s into %s", repo_id, folder)
        snapshot_download(repo_id, local_dir=str(folder), allow_patterns=patterns)
    except Exception as exc:  # the network went away mid-download (huggingface_hub raises httpx errors)
        reason = f"the download failed ({exc.__class__.__name__}: {_reason(exc)})"
        raise WeightsUnavailableError(_how_to_get(repo_id, folder, reason)) from None
    if not _complete(folder, weights):
        raise WeightsUnavailableError(_how_to_get(repo_id, folder, "the download is incomplete"))
    return folder


def _how_to_get(repo_id: str, folder: Path, why: str) -> str:
    return (
        f"model {repo_id} is not downloaded and {why}. Fix: connect this machine to the internet and run "
        f"`python -m bot download`, or copy a checkpoint folder (config.json, model.safetensors or "
        f"pytorch_model.bin, tokenizer files) to {folder}, or set model.source to such a folder"
    )
