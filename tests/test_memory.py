"""The store on SQLite and on PostgreSQL (the `store` fixture in conftest)."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from memory import ConversationKey, MemoryStore, MemoryStoreError
from memory.engine import default_url
from memory.schema import Turn

DM = ConversationKey("telegram", "chat-1", "alice")
GROUP = ConversationKey("telegram", "group-9", "alice")
BOB = ConversationKey("telegram", "chat-2", "bob")


async def test_turns_are_kept_per_conversation(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "secret in a DM")
    await store.add_turn(DM, "bot", "noted")
    await store.add_turn(GROUP, "user", "hello group")
    assert [t.text for t in await store.context_turns(DM)] == ["secret in a DM", "noted"]
    assert [t.text for t in await store.context_turns(GROUP)] == ["hello group"]
    assert [t.role for t in await store.context_turns(DM)] == ["user", "bot"]
    assert await store.context_turns(BOB) == []


async def test_context_turns_are_the_newest_in_order(store: MemoryStore) -> None:
    for i in range(10):
        await store.add_turn(DM, "user" if i % 2 == 0 else "bot", f"t{i}")
    assert [t.text for t in await store.context_turns(DM, limit=3)] == ["t7", "t8", "t9"]


async def test_reset_excludes_earlier_turns_but_keeps_them_for_export(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "old")
    assert await store.reset(DM) == 1
    await store.add_turn(DM, "user", "new")
    assert [t.text for t in await store.context_turns(DM)] == ["new"]
    exported = await store.export("telegram", "alice")
    assert [(t["text"], t["reset"]) for t in exported["conversations"][0]["turns"]] == [
        ("old", True),
        ("new", False),
    ]


async def test_blocked_turns_never_enter_a_context(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "nasty", blocked=True)
    await store.add_turn(DM, "user", "nice")
    assert [t.text for t in await store.context_turns(DM)] == ["nice"]


async def test_forget_deletes_only_this_person_on_this_platform(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "a")
    await store.add_turn(GROUP, "user", "b")
    await store.add_turn(BOB, "user", "c")
    await store.add_turn(ConversationKey("discord", "x", "alice"), "user", "d")
    assert await store.forget("telegram", "alice") == 2
    assert (await store.export("telegram", "alice"))["conversations"] == []
    assert [t.text for t in await store.context_turns(BOB)] == ["c"]
    assert len((await store.export("discord", "alice"))["conversations"]) == 1


async def test_export_is_json(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", 'quotes " and émoji 🎉')
    document = json.loads(json.dumps(await store.export("telegram", "alice")))
    turn = document["conversations"][0]["turns"][0]
    assert turn["text"] == 'quotes " and émoji 🎉'
    assert datetime.fromisoformat(turn["time"]).tzinfo is not None


async def test_retention_deletes_old_turns(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "ancient")
    await store.add_turn(DM, "user", "recent")
    async with store.engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(days=40)
        await conn.execute(update(Turn).where(Turn.text == "ancient").values(created_at=old))
    assert await store.purge_older_than(30) == 1
    assert [t.text for t in await store.context_turns(DM)] == ["recent"]


async def test_concurrent_writers_do_not_fail(store: MemoryStore) -> None:
    keys = [ConversationKey("web", f"c{i % 5}", f"u{i % 5}") for i in range(40)]
    await asyncio.gather(*(store.add_turn(k, "user", f"m{i}") for i, k in enumerate(keys)))
    assert await store.count_turns() == 40


async def test_reopening_keeps_data_and_migrations_are_idempotent(tmp_path: Path) -> None:
    url = default_url(tmp_path / "d")
    first = await MemoryStore.open(url)
    await first.add_turn(DM, "user", "persisted")
    await first.close()
    second = await MemoryStore.open(url)
    assert [t.text for t in await second.context_turns(DM)] == ["persisted"]
    async with second.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0004"
    await second.close()
    mode = stat.S_IMODE((tmp_path / "d" / "blenderd.sqlite3").stat().st_mode)
    assert mode == 0o600


def test_the_newest_migration_is_the_one_alembic_names() -> None:
    """The start skips alembic when the database is at ``_head()``, read from the file names."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from memory import engine

    config = Config()
    config.set_main_option("script_location", str(engine._MIGRATIONS))
    assert engine._head() == ScriptDirectory.from_config(config).get_current_head()


async def test_an_older_database_is_migrated_on_open(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from memory import engine

    url = default_url(tmp_path / "d")
    store = await MemoryStore.open(url)
    await store.add_turn(DM, "user", "from an older version")

    def downgrade(connection: object) -> None:
        config = Config()
        config.set_main_option("script_location", str(engine._MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")

    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade)
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0003"
    await store.close()
    reopened = await MemoryStore.open(url)
    async with reopened.engine.connect() as conn:
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0004"
        columns = (await conn.execute(text("SELECT name FROM pragma_table_info('inbox')"))).scalars().all()
    assert "owner" in columns
    assert [t.text for t in await reopened.context_turns(DM)] == ["from an older version"]
    await reopened.close()


async def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(MemoryStoreError, match="cannot open the database postgresql"):
        await MemoryStore.open("postgresql+asyncpg://nobody:secret@127.0.0.1:9/none")
    with pytest.raises(MemoryStoreError, match="the database URL is not a valid URL"):
        await MemoryStore.open("not a url")
