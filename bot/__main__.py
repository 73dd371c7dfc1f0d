"""``python -m bot``: the console chat (default), the daemon, or an ahead-of-time download."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bot.config import Config, ConfigError, load_config
from bot.logs import setup_logging

logger = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="blenderd, a self-hosted Blenderbot.")
    parser.add_argument("--config", type=Path, default=None, help="config file (default: ./config.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="{chat,run,download,healthcheck}")
    sub.add_parser("chat", help="talk to the bot in this terminal, or pipe lines in (default)")
    sub.add_parser("run", help="run the daemon with every adapter enabled in the config")
    sub.add_parser("download", help="download the model weights ahead of time, then exit")
    sub.add_parser("healthcheck", help="exit 0 when the running daemon reports healthy (for Docker)")
    return parser


async def _chat(config: Config) -> None:
    from adapters.console import run_console
    from bot.app import App

    app = App(config)
    await app.start()
    try:
        await run_console(app.core, user=config.console.user)
    finally:
        await app.stop()


async def _run(config: Config) -> None:
    from adapters.registry import build_adapters, platform_tokens
    from bot.app import App
    from bot.daemon import Daemon

    tokens = platform_tokens(config)  # before loading the model: a missing token fails fast
    if not tokens:
        raise ConfigError(
            "nothing to run: enable telegram or discord in the config (or use `python -m bot chat`)"
        )
    daemon = Daemon(App(config), lambda core: build_adapters(config, core, tokens))
    daemon.install_signal_handlers()
    await daemon.serve()


def _download(config: Config) -> None:
    from model import resolve

    folder = resolve(config.model.source, config.data_dir, download=True)
    logger.info("model %s is ready in %s", config.model.source, folder)
    c = config.safety.classifier
    if c.enabled:
        from safety.classifier import ClassifierLoadError, load_detoxify

        try:  # loading once also fills the Hugging Face cache with the classifier's base model
            load_detoxify(
                model=c.model,
                checkpoint=c.checkpoint,
                config_folder=c.config_folder,
                device="cpu",
                cache=config.data_dir / "safety",
            )
        except ClassifierLoadError as exc:
            raise ConfigError(f"the safety classifier could not be downloaded: {exc}") from None
        logger.info("safety classifier %s is ready", c.model)


def _healthcheck(config: Config) -> int:
    import urllib.error
    import urllib.request

    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host
    url = f"http://{host}:{config.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    except OSError as exc:
        logger.error("healthcheck: %s is not answering (%s)", url, exc)
        return 1
    sys.stdout.write(body + "\n")
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging("INFO")
    try:
        config = load_config(args.config)
        setup_logging(config.logging.level)
        command = args.command or "chat"
        if command == "download":
            _download(config)
        elif command == "healthcheck":
            return _healthcheck(config)
        elif command == "run":
            asyncio.run(_run(config))
        else:
            asyncio.run(_chat(config))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        logger.error("%s%s", exc, _fix_for(exc))
        return 2
    return 0


def _fix_for(exc: Exception) -> str:
    """The usual fix, when the error's own message does not say it."""
    from memory import MemoryStoreError
    from model import CheckpointError

    if isinstance(exc, CheckpointError):
        return (
            " (the checkpoint is damaged or incomplete: delete its folder and run `python -m bot download`, "
            "or point model.source at a good checkpoint)"
        )
    if isinstance(exc, MemoryStoreError):
        return (
            " (check database.url or BLENDERD_DATABASE_URL, that the database server is running, "
            "and that data_dir is writable and not full)"
        )
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return " (check that data_dir is a writable folder with free space)"
    return ""


def _is_user_error(exc: Exception) -> bool:
    from memory import MemoryStoreError
    from model import ModelError
    from safety import SafetyError

    return isinstance(exc, ConfigError | MemoryStoreError | ModelError | SafetyError | ValueError | OSError)


if __name__ == "__main__":
    sys.exit(main())
