"""The database engine: the URLs blenderd accepts, connection set-up per backend, migrations,
and running every operation to its end.

SQLite runs in WAL mode with ``synchronous=NORMAL``, a busy timeout and ``BEGIN IMMEDIATE``
transactions, so concurrent writers queue instead of failing with "database is locked"; reads
(``MemoryStore.reading``) open no transaction. PostgreSQL plans every statement for its values.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class MemoryStoreError(Exception):
    """The database cannot be opened or migrated."""


class _Tracked(Protocol):
    _running: set[asyncio.Future[Any]]


_P = ParamSpec("_P")
_T = TypeVar("_T")
_S = TypeVar("_S", bound=_Tracked)

# The drivers blenderd ships, by the scheme a URL may name (``postgres://`` is Heroku's spelling).
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
SUPPORTED_URLS = "sqlite:///path/to/file.sqlite3 or postgresql://user:password@host:5432/dbname"


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'blenderd.sqlite3'}"


def database_url(url: str) -> URL:
    """Parse ``url`` and name the async driver blenderd uses for it (asyncpg, aiosqlite)."""
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError for a malformed URL; the URL itself may hold a password
        raise MemoryStoreError(f"the database URL is not a valid URL: use {SUPPORTED_URLS}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise MemoryStoreError(
            f"the database URL names {parsed.drivername!r}, which blenderd does not support: use "
            f"{SUPPORTED_URLS}"
        )
    return parsed.set(drivername=driver)


def shown(url: URL | str) -> str:
    """A URL as it may appear in a message: the password masked."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except Exception:
        return "(an invalid URL)"
    return parsed.render_as_string(hide_password=True)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unavailable for now (locked, down, unreachable), as
    opposed to rejecting this one statement: an outage is waited out, a rejection is not."""
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, OSError)


def runs_to_end(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Awaitable[_T]]:
    """Run the operation as its own task, shielded from the caller's cancellation, and track it."""

    @functools.wraps(method)
    async def run(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    return run


def _without(text_: str, secret: str | None) -> str:
    return text_.replace(secret, "***") if secret else text_


def _prepare_sqlite_file(url: URL) -> None:
    """Create the data dir (0700) and the database file (0600) before SQLite does."""
    database = url.database
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own deferred BEGIN is disabled ...
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # ... and replaced by a write-locking one. A read (MemoryStore.reading) opens no transaction:
        # each of its statements reads the newest commit (WAL) beside the writer and other readers.
        if not connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _configure_postgres(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Plan each statement for its values: blenderd's statements are small (a plan costs about
        # 0.1 ms), and a cached generic plan, blind to how many turns one person or one word has,
        # scans a person's whole history (memory/search.py). A SET, not a startup parameter, so
        # that pgbouncer accepts it; PostgreSQL before 12 has no such setting and keeps its own.
        try:
            dbapi_connection.run_async(lambda c: c.execute("SET plan_cache_mode = force_custom_plan"))
        except Exception as exc:  # an old server: its default planning stays
            logger.debug("plan_cache_mode not set: %s", exc)


READ_ONLY = "blenderd_read_only"
_MIGRATING = {"n": "blenderd:migrations"}


def _head() -> str:
    """The newest migration's revision, without importing alembic: the revisions are one line,
    ``0001`` to ``NNNN``, each file named after its own (tests/test_memory.py checks that alembic
    agrees)."""
    return max(path.name.split("_", 1)[0] for path in (_MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _upgrade(connection: Connection) -> None:
    """Migrate to the newest schema. A database already there is only read: importing alembic and
    reading its scripts takes 0.3 s of a start, on the thread that imports the model meanwhile."""
    if inspect(connection).has_table("alembic_version"):
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if version == _head():
            return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def connect(url: str, *, migrate: bool) -> AsyncEngine:
    """An engine for ``url``, migrated to the newest schema (or only checked, without ``migrate``)."""
    parsed = database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and migrate:
        try:
            _prepare_sqlite_file(parsed)
        except OSError as exc:
            raise MemoryStoreError(f"cannot create the database file: {exc}") from None
    engine = create_async_engine(parsed, pool_pre_ping=backend != "sqlite")
    if backend == "sqlite":
        _configure_sqlite(engine)
    else:
        _configure_postgres(engine)
    try:
        async with engine.begin() as connection:
            if migrate:
                if backend != "sqlite":  # daemons starting together on one server migrate one at a time
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"), _MIGRATING
                    )
                await connection.run_sync(_upgrade)
            else:
                await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        reason = _without(str(exc).splitlines()[0] if str(exc) else "", parsed.password)
        fix = (
            "check that data_dir is writable and the disk not full"
            if backend == "sqlite"
            else "check database.url or BLENDERD_DATABASE_URL and that the database server is running"
        )
        raise MemoryStoreError(
            f"cannot open the database {shown(parsed)}: {exc.__class__.__name__}: {reason} ({fix})"
        ) from None
    return engine


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite returns naive UTC
