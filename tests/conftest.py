from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from memory import MemoryStore
from memory.engine import default_url
from tests.checkpoints import HEAVY_SHAPE, build_blenderbot, build_blenderbot_small


@pytest.fixture(scope="session")
def blenderbot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_blenderbot(tmp_path_factory.mktemp("blenderbot"))


@pytest.fixture(scope="session")
def blenderbot_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_blenderbot_small(tmp_path_factory.mktemp("blenderbot_small"))


@pytest.fixture(scope="session", params=["blenderbot", "blenderbot_small"])
def checkpoint_dir(request: pytest.FixtureRequest, blenderbot_dir: Path, blenderbot_small_dir: Path) -> Path:
    return blenderbot_dir if request.param == "blenderbot" else blenderbot_small_dir


@pytest.fixture(scope="session")
def detoxify_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.checkpoints import build_detoxify

    return build_detoxify(tmp_path_factory.mktemp("detoxify"))


@pytest.fixture(scope="session")
def heavy_blenderbot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bigger random Blenderbot whose generation takes long enough to be caught mid-way."""
    return build_blenderbot(tmp_path_factory.mktemp("heavy"), shape=HEAVY_SHAPE)


POSTGRES_ENV = "BLENDERD_TEST_POSTGRES_URL"


# The store on SQLite and on PostgreSQL (BLENDERD_TEST_POSTGRES_URL, set by .ci/run), emptied first.
@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MemoryStore]:
    if request.param == "sqlite":
        url = default_url(tmp_path / "data")
    else:
        url = os.environ.get(POSTGRES_ENV, "")
        if not url:
            pytest.skip(f"{POSTGRES_ENV} is not set, so no PostgreSQL server to test against")
        cleaner = await MemoryStore.open(url)
        async with cleaner.engine.begin() as conn:
            await conn.execute(
                text(
                    "DROP TABLE IF EXISTS facts, people, inbox, turns, conversations, alembic_version CASCADE"
                )
            )
        await cleaner.close()
    s = await MemoryStore.open(url)
    yield s
    await s.close()


@pytest.fixture
async def fresh_postgres() -> AsyncIterator[str]:
    """A database of its own on the test PostgreSQL server (for daemons sharing one), dropped after."""
    import secrets

    import asyncpg
    from sqlalchemy.engine import make_url

    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set, so no PostgreSQL server to test against")
    server = make_url(url)
    name = f"blenderd_{secrets.token_hex(6)}"
    dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
