"""Self-hosting without a Docker engine: the image's commands in this venv, compose and Dockerfile checks,
health, metrics and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from adapters.registry import Registry
from bot import app as app_module
from bot.app import App
from bot.config import Config
from bot.daemon import Daemon
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import CountingModel, tiny_config

ROOT = Path(__file__).resolve().parent.parent


def dockerfile_command(instruction: str) -> list[str]:
    """The exec-form command of ENTRYPOINT or HEALTHCHECK ... CMD in the Dockerfile."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith(instruction + " "):
            return list(json.loads(line[line.index("[") :]))
    raise AssertionError(f"no {instruction} in the Dockerfile")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and 'VOLUME ["/data"]' in text
    assert dockerfile_command("ENTRYPOINT") == ["python", "-m", "bot", "run"]


def test_compose_file_is_valid() -> None:
    import compose_spec

    compose = compose_spec.PyCompose.from_yaml((ROOT / "compose.yaml").read_text())
    compose.validate()
    services = compose.to_dict()["services"]
    gpu = services["bot"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert "deploy" not in services["bot-cpu"] and services["bot-cpu"]["profiles"] == ["cpu"]
    assert services["postgres"]["profiles"] == ["postgres", "scale"]
    worker = services["worker"]
    assert worker["profiles"] == ["scale"] and worker["command"] == ["python", "-m", "bot", "worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["profiles"] == ["scale"] and "ports" not in services["redis"]
    for name in ("bot", "bot-cpu"):
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"] == ["CMD", *dockerfile_command("HEALTHCHECK --interval=30s")]
        assert service["env_file"] in (".env", [".env"], [{"path": ".env"}])
        assert any(
            str(v).startswith("data:/data") or (isinstance(v, dict) and v.get("source") == "data")
            for v in service["volumes"]
        )
    example = (ROOT / ".env.example").read_text()
    assert "TELEGRAM_TOKEN=" in example and "DISCORD_TOKEN=" in example
    assert "BLENDERD_REDIS_URL=redis://redis:6379/0" in example


async def test_entry_and_healthcheck_commands_in_a_venv(tmp_path: Path, blenderbot_dir: Path) -> None:
    fake = FakeTelegram(token="4242:SECRET-TOKEN-VALUE")
    await fake.start()
    config = yaml.safe_load((ROOT / "docker" / "config.yaml").read_text())
    port = free_port()
    config["data_dir"] = str(tmp_path / "data")
    config["model"].update({"source": str(blenderbot_dir), "device": "cpu", "generation": {"max_length": 10}})
    config["http"] = {"host": "127.0.0.1", "port": port}
    config["telegram"]["api_base_url"] = fake.base_url
    config["safety"] = {"classifier": {"enabled": False}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "TELEGRAM_TOKEN": fake.token, "PYTHONPATH": str(ROOT)}
    env.pop("DISCORD_TOKEN", None)

    def command(args: list[str]) -> list[str]:
        return [sys.executable if args[0] == "python" else args[0], *args[1:]]

    async def healthcheck() -> int:
        proc = await asyncio.create_subprocess_exec(
            *command(dockerfile_command("HEALTHCHECK --interval=30s")),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return await proc.wait()

    daemon = await asyncio.create_subprocess_exec(
        *command(dockerfile_command("ENTRYPOINT")), cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    try:
        for _ in range(240):
            if await healthcheck() == 0:
                break
            assert daemon.returncode is None
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("the daemon never became healthy")
        fake.send(fake.chat(5), 5, "Hello from the container test")
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", 5)))
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        assert 'blenderd_messages_in_total{platform="telegram"} 1.0' in metrics
        assert "blenderd_generation_seconds_bucket" in metrics
        trims = re.search(r"^blenderd_heap_trim_seconds_count (\S+)$", metrics, re.M)
        assert trims is not None and float(trims.group(1)) >= 1  # the heap given back after the batch
        resident = re.search(r"^process_resident_memory_bytes (\S+)$", metrics, re.M)
        assert resident is not None and float(resident.group(1)) > 50e6
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0
        assert await healthcheck() == 1  # nothing answers any more
    finally:
        if daemon.returncode is None:
            daemon.kill()
        await fake.stop()
    assert daemon.stderr is not None
    log = (await daemon.stderr.read()).decode()
    assert "SECRET-TOKEN-VALUE" not in log
    assert "stopped" in log
    assert all(line[:4].isdigit() for line in log.splitlines() if line.strip())  # one line per event


@pytest.fixture
async def daemon_with_slow_model(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, FakeTelegram]]:
    fake = FakeTelegram()
    await fake.start()
    monkeypatch.setenv("TELEGRAM_TOKEN", fake.token)
    config = tiny_config(
        tmp_path / "data",
        blenderbot_dir,
        http={"port": free_port()},
        telegram={"enabled": True, "api_base_url": fake.base_url},
        shutdown={"grace_seconds": 10},
    )

    def slow(c: Config) -> CountingModel:
        return CountingModel(app_module.load_model(c), delay=1.0)

    daemon = Daemon(App(config, load=slow), Registry(config))
    yield daemon, fake
    await fake.stop()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def test_healthz_reports_each_part(daemon_with_slow_model: tuple[Daemon, FakeTelegram]) -> None:
    daemon, _ = daemon_with_slow_model
    await daemon.start()
    await daemon.ready.wait()
    assert daemon.http is not None
    url = f"http://127.0.0.1:{daemon.http.port}/healthz"
    status, body = await get_json(url)
    assert status == 200 and body == {
        "status": "ok",
        "model": True,
        "database": True,
        "platforms": {"telegram": True},
    }
    await daemon.adapters[0].stop_intake()  # the platform connection is down
    status, body = await get_json(url)
    assert status == 503 and body["platforms"] == {"telegram": False}
    await daemon.stop()


async def test_shutdown_finishes_in_flight_replies_and_leaves_new_messages_for_later(
    daemon_with_slow_model: tuple[Daemon, FakeTelegram],
) -> None:
    daemon, fake = daemon_with_slow_model
    await daemon.start()
    await daemon.ready.wait()
    fake.send(fake.chat(7), 7, "a message in flight")
    await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 7)))  # being generated (1 s)
    stopping = asyncio.create_task(daemon.stop())
    await asyncio.sleep(0.2)
    fake.send(fake.chat(8), 8, "arrives during shutdown")
    await asyncio.wait_for(stopping, 30)
    assert len(fake.sent("sendMessage", 7)) == 1  # the in-flight reply was delivered
    assert fake.sent("sendMessage", 8) == []
    assert [u["message"]["text"] for u in fake.updates] == [
        "arrives during shutdown"
    ]  # kept for the next start
