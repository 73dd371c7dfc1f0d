"""Which errors are the environment's or the input's, and the one line a user gets for each.

Everything else is a bug in blenderd: reported as one, with its traceback (exit 1).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bot.config import Config, ConfigError
from bot.sections import is_hub_id


def user_error(exc: BaseException, config: Config) -> str | None:
    """The one line for a problem of the environment or the input; None for a bug."""
    for kind, fix in _user_errors():
        if isinstance(exc, kind):
            return f"{exc}{fix(exc, config)}"
    return None


def _no_fix(exc: BaseException, config: Config) -> str:
    return ""


def _checkpoint_fix(exc: BaseException, config: Config) -> str:
    if is_hub_id(config.model.source):
        return (
            " (the downloaded copy is damaged: delete it from data_dir/models and run "
            "`python -m bot download`)"
        )
    return f" (model.source {config.model.source} is your own folder: replace it with a complete checkpoint)"


def _os_fix(exc: BaseException, config: Config) -> str:
    return f" (check that data_dir {config.data_dir} is a writable folder with free space)"


def _user_errors() -> list[tuple[type[BaseException], Callable[[BaseException, Config], str]]]:
    """Error types that are the environment's or the input's, by the module that defines them.

    Only modules already imported are asked: a config error must not import keras or torch.
    """
    kinds: list[tuple[type[BaseException], Callable[[BaseException, Config], str]]] = [(ConfigError, _no_fix)]
    model = sys.modules.get("model")
    if model is not None:
        kinds += [(model.CheckpointError, _checkpoint_fix), (model.ModelError, _no_fix)]
    for module, name in (
        ("memory", "MemoryStoreError"),
        ("safety", "SafetyError"),
        ("bot.daemon", "PlatformError"),
        ("bot.remote", "RemoteError"),
    ):
        loaded = sys.modules.get(module)
        if loaded is not None:
            kinds.append((getattr(loaded, name), _no_fix))
    kinds.append((OSError, _os_fix))
    return kinds
