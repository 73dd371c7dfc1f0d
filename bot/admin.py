"""`python -m bot admin ...`: the self-hoster's commands on the stored data, without the daemon.

They open the database like the daemon does (migrations included) and are safe while it runs:
SQLite serialises the writers, and each command is one short transaction.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from bot.config import Config, ConfigError
from memory import MemoryStore
from memory.engine import database_url, shown

logger = logging.getLogger(__name__)


async def run_admin(config: Config, args: argparse.Namespace) -> int:
    url = config.database_url()
    if args.action == "backup":
        return _backup(url, args.path)
    store = await MemoryStore.open(url)
    try:
        if args.action == "stats":
            _stats(await store.stats())
        elif args.action == "export":
            document = await store.export(args.platform, args.user)
            sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        elif args.action == "forget":
            deleted = await store.forget(args.platform, args.user)
            sys.stdout.write(f"deleted {deleted} messages of {args.platform} user {args.user}\n")
        elif args.action == "purge":
            if args.days < 1:
                raise ConfigError("--older-than needs a number of days of at least 1")
            deleted = await store.purge_older_than(args.days)
            sys.stdout.write(f"deleted {deleted} messages older than {args.days} days\n")
    finally:
        await store.close()
    return 0


def _stats(stats: dict[str, dict[str, int]]) -> None:
    rows = [("platform", "people", "conversations", "messages")]
    rows += [(p, str(s["people"]), str(s["conversations"]), str(s["messages"])) for p, s in stats.items()]
    if len(rows) == 1:
        sys.stdout.write("nothing stored yet\n")
        return
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        sys.stdout.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def _backup(url: str, target: Path) -> int:
    """SQLite: an online backup (consistent while the daemon writes). PostgreSQL: the pg_dump command."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite":
        plain = parsed.set(drivername="postgresql")._replace(password=None)
        sys.stdout.write(
            "PostgreSQL is backed up with its own tool; run (with the password in PGPASSWORD or ~/.pgpass):\n"
            f"  pg_dump --format=custom --file={target} '{shown(plain)}'\n"
        )
        return 0
    source = Path(parsed.database or "")
    if not source.is_file():
        raise ConfigError(f"there is no database to back up at {source} yet")
    if target.exists():
        raise ConfigError(f"{target} exists already: choose a new file name")
    try:
        origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        with closing(origin), closing(sqlite3.connect(target)) as copy:
            origin.backup(copy)
        target.chmod(0o600)
    except sqlite3.Error as exc:
        raise ConfigError(f"the backup to {target} failed: {exc}") from None
    size = target.stat().st_size
    sys.stdout.write(f"backed up {source} to {target} ({size} bytes)\n")
    return 0
