"""discord.shard_count / shard_ids through `python -m bot run`: an AutoShardedClient against the fake
gateway, which routes a server's events to its shard and DMs to shard 0; /healthz shows each shard."""

from __future__ import annotations

from pathlib import Path

from tests.cli import (
    SHIM,
    closed_port,
    health,
    offline_env,
    start_daemon,
    stop,
    tiny,
    wait_healthy,
    write_config,
)
from tests.fakes.discord_api import CHANNEL_ID, DM_CHANNEL_ID, FakeDiscord, user

TOKEN = "discord-shard-token-xyz"
ALICE = user(11, "alice")


def env(fake: FakeDiscord) -> dict[str, str]:
    return offline_env(
        DISCORD_TOKEN=TOKEN,
        PYTHONPATH=str(SHIM),
        BLENDERD_TEST_DISCORD_API=fake.api_base,
        BLENDERD_TEST_DISCORD_GATEWAY=fake.gateway,
    )


def replies(fake: FakeDiscord, channel: int) -> list[str]:
    return [str((c.json or {}).get("content")) for c in fake.posted(f"/channels/{channel}/messages")]


async def test_two_shards_in_one_process_answer_dms_and_servers(tmp_path: Path, blenderbot_dir: Path) -> None:
    fake = FakeDiscord(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = tiny(
        tmp_path,
        blenderbot_dir,
        discord={"enabled": True, "shard_count": 2, "slash_commands": False},
        http={"port": port},
    )
    daemon, log = await start_daemon(tmp_path, raw, env(fake))
    try:
        await wait_healthy(port, daemon, log)
        answer = await health(port)
        assert answer is not None and answer[1]["shards"] == {"discord": {"0": True, "1": True}}
        assert sorted(shard for shard, _ in fake.shard_of.values()) == [0, 1]
        assert {count for _, count in fake.shard_of.values()} == {2}
        await fake.send_message(ALICE, "hello in a DM", channel_id=DM_CHANNEL_ID, guild=False)  # shard 0
        await fake.send_message(ALICE, "<@1000> hello in the server", channel_id=CHANNEL_ID)  # shard 1
        await fake.wait_for(
            lambda: bool(replies(fake, DM_CHANNEL_ID) and replies(fake, CHANNEL_ID)), timeout=60
        )
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()
    text = log.read_text()
    assert "Traceback" not in text and TOKEN not in text


async def test_a_process_runs_only_its_shard_ids(tmp_path: Path, blenderbot_dir: Path) -> None:
    fake = FakeDiscord(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = tiny(
        tmp_path,
        blenderbot_dir,
        discord={"enabled": True, "shard_count": 2, "shard_ids": [1], "slash_commands": False},
        http={"port": port},
    )
    daemon, log = await start_daemon(tmp_path, raw, env(fake))
    try:
        await wait_healthy(port, daemon, log)
        answer = await health(port)
        assert answer is not None and answer[1]["shards"] == {"discord": {"1": True}}
        assert list(fake.shard_of.values()) == [(1, 2)]
        await fake.send_message(ALICE, "<@1000> hello in the server", channel_id=CHANNEL_ID)  # its shard
        await fake.wait_for(lambda: bool(replies(fake, CHANNEL_ID)), timeout=60)
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()


def test_shard_ids_need_a_count_below_which_they_lie(tmp_path: Path, blenderbot_dir: Path) -> None:
    from tests.cli import one_error, run

    for discord, expected in (
        ({"shard_ids": [0]}, "discord.shard_ids needs discord.shard_count"),
        ({"shard_count": 2, "shard_ids": [2]}, "are not below shard_count 2"),
        ({"shard_count": 0}, "must be at least 1"),
    ):
        raw = tiny(tmp_path, blenderbot_dir, discord={"enabled": True, **discord})
        line = one_error(run("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path))
        assert expected in line, line
