"""``python -m bot``: the console chat (default), the daemon, set-up checks and admin commands.

Every problem of the environment or the input ends in one line naming the cause and the fix, and
exit status 2; a bug in blenderd says so on that line, with the traceback after it (exit 1).
Nothing heavy is imported before the config has been read, so a config error is reported at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from bot import collection
from bot.config import CONFIG_VARIABLE, Config, ConfigError, load_config
from bot.logs import setup_logging
from bot.user_errors import user_error

logger = logging.getLogger("bot")

EXIT_USER_ERROR = 2
EXIT_BUG = 1


def _version() -> str:
    try:
        return metadata.version("blenderd")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    config_help = f"config file (default: ${CONFIG_VARIABLE}, else ./config.yaml)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="blenderd, a self-hosted Blenderbot for Discord, Telegram, the web and the terminal.",
        epilog="Run `python -m bot COMMAND --help` for each command's own options.",
    )
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    parser.add_argument("--version", action="version", version=f"blenderd {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=summary, description=description)

    add(
        "chat",
        "talk to the bot in this terminal, or pipe lines in (the default)",
        "Talk to the bot in this terminal, with line editing and history; /quit or Ctrl-D leaves. "
        "Piped input gets one reply per line. Log warnings go to the terminal, everything else to "
        "logging.file when set.",
    )
    add(
        "run",
        "run the daemon: every enabled platform and the web chat",
        "Run the daemon: every enabled platform (telegram, discord), the web chat when web.enabled, and "
        "the HTTP server with /healthz and /metrics. SIGTERM or Ctrl-C stops it within "
        "shutdown.grace_seconds.",
    )
    add(
        "worker",
        "run a model worker for daemons with model.remote (one per GPU or CPU)",
        "Load the model and answer the generation requests of every daemon that shares the Redis of "
        "model.remote (or BLENDERD_REDIS_URL). Start one per GPU or CPU; a worker that dies leaves its "
        "requests to the others (worker.claim_after_seconds). SIGTERM finishes the requests in hand.",
    )
    add(
        "download",
        "download the model and the safety classifier ahead of time, then exit",
        "Download model.source (a hub id) into data_dir/models and the safety classifier into "
        "data_dir/safety, then exit. Needs internet access; a local folder needs nothing.",
    )
    add(
        "healthcheck",
        "exit 0 when the running daemon reports healthy (for Docker)",
        "Ask the running daemon's /healthz (http.host and http.port); exit 0 when healthy, 1 otherwise.",
    )
    add(
        "check-config",
        "validate the config, the tokens, the database and the model folder, then exit",
        "Validate the config file, the tokens of enabled platforms, the database connection and the model "
        "and classifier files without starting anything; exit 0 when all is well, 2 otherwise.",
    )
    admin = add(
        "admin",
        "for self-hosters: stats, export or forget a person, backup, purge",
        "Operate on the stored data without the daemon (safe while it runs).",
    )
    actions = admin.add_subparsers(dest="action", metavar="ACTION", required=True)

    def person(name: str, summary: str) -> None:
        action = actions.add_parser(name, parents=[common], help=summary, description=summary)
        action.add_argument("--platform", required=True, help="telegram, discord, web or console")
        action.add_argument("--user", required=True, help="the person's user id on that platform")

    actions.add_parser(
        "stats",
        parents=[common],
        help="people, conversations and messages per platform",
        description="People, conversations and messages stored, per platform.",
    )
    person("export", "print everything stored about one person as JSON (for a data request)")
    person("forget", "delete everything stored about one person (for a deletion request)")
    backup = actions.add_parser(
        "backup",
        parents=[common],
        help="an online backup of the SQLite database",
        description="Copy the SQLite database to PATH with SQLite's online backup (safe while the bot "
        "runs); for PostgreSQL, print the pg_dump command to run.",
    )
    backup.add_argument("path", type=Path, metavar="PATH")
    purge = actions.add_parser(
        "purge",
        parents=[common],
        help="delete stored messages older than DAYS days",
        description="Delete stored messages older than DAYS days (database.retention_days does this daily).",
    )
    purge.add_argument("--older-than", type=int, required=True, metavar="DAYS", dest="days")
    return parser


async def _chat(config: Config) -> None:
    from adapters.console import run_console
    from bot.app import App

    app = App(config)
    await app.start()
    try:
        await run_console(app.core, user=config.console.user, data_dir=config.data_dir)
    finally:  # nothing is in flight after /quit; after Ctrl-C, do not wait for a generation
        await app.stop(timeout=1.0)


async def _run(config: Config) -> None:
    from bot.config import runnable

    runnable(config)  # before importing the model: a missing token fails at once

    from adapters.registry import Registry
    from bot.app import App
    from bot.daemon import Daemon

    registry = Registry(config)
    daemon = Daemon(App(config), registry)
    daemon.install_signal_handlers()
    await daemon.serve()


def _download(config: Config) -> None:
    from model import resolve

    folder = resolve(config.model.source, config.data_dir, download=True)
    logger.info("model %s is ready in %s", config.model.source, folder)
    c = config.safety.classifier
    if c.enabled:
        from safety import SafetyError
        from safety.classifier import ClassifierLoadError, load_classifier

        try:  # its checkpoint and its base model's config and tokenizer files, into data_dir/safety
            load_classifier(
                model=c.model,
                checkpoint=c.checkpoint,
                config_folder=c.config_folder,
                device="cpu",
                cache=config.data_dir / "safety",
            )
        except ClassifierLoadError as exc:
            raise SafetyError(f"the safety classifier could not be downloaded: {exc}") from None
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


def _command(args: argparse.Namespace, config: Config) -> int:
    command = args.command or "chat"
    if command == "download":
        _download(config)
    elif command == "healthcheck":
        return _healthcheck(config)
    elif command == "check-config":
        from bot.preflight import check_config

        return check_config(config)
    elif command == "admin":
        from bot.admin import run_admin

        return asyncio.run(run_admin(config, args))
    elif command == "run":
        asyncio.run(_run(config))
    elif command == "worker":
        from bot.worker_service import run_worker

        asyncio.run(run_worker(config))
    else:
        asyncio.run(_chat(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.command or "chat") in ("chat", "run", "worker"):  # until their start is over
        collection.pause()
    setup_logging("INFO")
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_USER_ERROR
    # The console chat keeps the terminal for the conversation, and one-shot commands for their
    # answer: warnings and errors only there (logging.file, when set, gets everything).
    quiet = (args.command or "chat") in ("chat", "admin", "check-config", "healthcheck")
    try:
        setup_logging(
            config.logging.level,
            message_text=config.logging.message_text,
            file=config.logging.file,
            terminal_level="WARNING" if quiet else None,
            extra_urls=[config.database.url or "", config.model.remote or ""],
        )
    except OSError as exc:
        logger.error(
            "logging.file %s cannot be written: %s (fix the path)", config.logging.file, exc.strerror
        )
        return EXIT_USER_ERROR
    code = _run_command(args, config)
    _exit_now_if_the_model_is_busy(code)
    return code


def _run_command(args: argparse.Namespace, config: Config) -> int:
    try:
        return _command(args, config)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        problem = user_error(exc, config)
        if problem is None:
            logger.critical(
                "a bug in blenderd (%s); please report it with this line, secrets are removed",
                exc.__class__.__name__,
                exc_info=True,
            )
            return EXIT_BUG
        logger.error("%s", problem)
        return EXIT_USER_ERROR


def _exit_now_if_the_model_is_busy(code: int) -> None:
    """A generation cannot be interrupted; after a shutdown past its budget, do not wait for it."""
    worker = sys.modules.get("bot.worker")
    if worker is not None and worker.busy_threads():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
