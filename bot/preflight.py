"""`python -m bot check-config`: everything a start needs, checked without starting anything.

One line per check on stdout (``ok`` or ``problem``, with the fix); exit 0 when all hold, 2 when one
does not. Keras and torch are not imported and no weights are read, so it answers in a second or so.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bot.config import PLATFORM_TOKENS, Config, ConfigError, secret
from bot.sections import is_hub_id

EXIT_PROBLEM = 2
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_TOKENIZER = ("tokenizer.json", "vocab.json")


def check_config(config: Config) -> int:
    problems = 0
    for ok, line in _checks(config):
        sys.stdout.write(("ok       " if ok else "problem  ") + line + "\n")
        problems += not ok
    sys.stdout.write("all checks passed\n" if not problems else f"{problems} problem(s) found\n")
    return 0 if not problems else EXIT_PROBLEM


def _checks(config: Config) -> Iterator[tuple[bool, str]]:
    yield True, "config: valid"
    yield from _platforms(config)
    yield _data_dir(config.data_dir)
    yield _database(config)
    yield _model(config)
    if config.remote_url() is not None:
        yield _remote(config.remote_url() or "")
    yield from _classifier(config)


def _platforms(config: Config) -> Iterator[tuple[bool, str]]:
    for platform, variable in PLATFORM_TOKENS.items():
        enabled = getattr(config, platform).enabled
        if enabled is False:
            continue
        try:
            token = secret(variable)
        except ConfigError as exc:
            yield False, f"{platform}: {exc}"
            continue
        if token:
            yield True, f"{platform}: {variable} is set"
        elif enabled == "auto":
            yield True, f"{platform}: enabled when {variable} is set (it is not)"
        else:
            yield False, f"{platform}: enabled but {variable} is not set: export {variable}=<token>"
    if config.web.enabled:
        if config.http.enabled:
            yield True, f"web: chat at http://{config.http.host}:{config.http.port}/chat"
        else:
            yield False, "web: web.enabled needs http.enabled: true"


def _data_dir(folder: Path) -> tuple[bool, str]:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return False, f"data_dir: {existing} is not a folder: set data_dir to a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return False, f"data_dir: {existing} is not writable: fix its permissions or set data_dir"
    return True, f"data_dir: {folder}" + ("" if folder.exists() else " (created at the first start)")


def _database(config: Config) -> tuple[bool, str]:
    from memory import MemoryStore, MemoryStoreError
    from memory.engine import database_url, shown

    url = config.database_url()
    try:
        parsed = database_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = Path(parsed.database or "")
            if not path.exists():
                return True, f"database: {shown(parsed)} (created at the first start)"

        async def connect() -> None:
            store = await MemoryStore.open(url, migrate=False)
            await store.close()

        asyncio.run(connect())
    except MemoryStoreError as exc:
        return False, f"database: {exc}"
    return True, f"database: {shown(parsed)} answers"


def _remote(url: str) -> tuple[bool, str]:
    """The Redis of model.remote answers (the workers themselves are checked by /healthz)."""
    from bot.remote import connect, unreachable, where

    async def ping() -> None:
        client = connect(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        return False, f"model workers: {unreachable(url, exc)}"
    return True, f"model workers: Redis at {where(url)} answers"


def _model(config: Config) -> tuple[bool, str]:
    source = config.model.source
    if is_hub_id(source):
        copy = config.data_dir / "models" / source.replace("/", "--")
        if _folder_problem(copy) is None:
            return True, f"model: {source}, downloaded in {copy}"
        return True, f"model: {source} is downloaded at the first start (or now: python -m bot download)"
    problem = _folder_problem(Path(source))
    if problem is not None:
        return False, f"model: {problem}"
    return True, f"model: checkpoint folder {source}"


def _folder_problem(folder: Path) -> str | None:
    if not folder.is_dir():
        return f"folder not found: {folder} (set model.source to a checkpoint folder or a hub id)"
    config = folder / "config.json"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return (
            f"{config} cannot be read ({exc.__class__.__name__}): the folder needs a checkpoint's config.json"
        )
    if not any((folder / name).is_file() for name in _WEIGHTS):
        return f"{folder} has no weights (model.safetensors or pytorch_model.bin)"
    if not any((folder / name).is_file() for name in _TOKENIZER):
        return f"{folder} has no tokenizer files (tokenizer.json, or vocab.json and merges.txt)"
    return None


def _classifier(config: Config) -> Iterator[tuple[bool, str]]:
    c = config.safety.classifier
    if not c.enabled:
        yield True, "safety classifier: off (safety.classifier.enabled: false)"
        return
    if c.model == "alt-profanity-check":
        import importlib.util

        if importlib.util.find_spec("profanity_check") is None:
            yield (
                False,
                "safety classifier: alt-profanity-check is missing: install 'blenderd[offline-classifier]'",
            )
        else:
            yield True, "safety classifier: alt-profanity-check (ships its model: no download)"
        return
    if c.checkpoint is None:
        yield (
            True,
            f"safety classifier: Detoxify {c.model}, downloaded at the first start into data_dir/safety",
        )
        return
    if not c.checkpoint.is_file():
        yield False, f"safety classifier: checkpoint not found: {c.checkpoint}"
    elif c.config_folder is not None and not (c.config_folder / "config.json").is_file():
        yield False, f"safety classifier: {c.config_folder} has no config.json"
    else:
        yield True, f"safety classifier: {c.checkpoint}"
