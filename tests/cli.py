"""Run `python -m bot ...` as a user does: a subprocess, a config file, and a machine without network.

"No network" is what a user's machine has: the Hugging Face hub at a closed 127.0.0.1 port
(``HF_ENDPOINT``, with ``HF_HUB_OFFLINE`` unset) and every other HTTPS request through a proxy
that refuses connections; only 127.0.0.1 (where the fake platform servers listen) is reachable.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.helpers import tiny_raw

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "tests" / "fakes" / "shim"  # points discord.py at a fake server (see its docstring)
_CLEARED = (
    "TELEGRAM_TOKEN",
    "DISCORD_TOKEN",
    "BLENDERD_DATABASE_URL",
    "BLENDERD_WEB_TOKEN",
    "BLENDERD_CONFIG",
)


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _CLEARED
        and not k.endswith("_FILE")
        and k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    refused = f"http://127.0.0.1:{closed_port()}"
    env.update(
        HF_ENDPOINT=refused,
        HTTPS_PROXY=refused,
        https_proxy=refused,
        HTTP_PROXY=refused,
        http_proxy=refused,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def tiny(folder: Path, checkpoint: Path, **sections: Any) -> dict[str, Any]:
    """A config file's content for the tiny checkpoint, with its data in ``folder/data``."""
    return tiny_raw(folder / "data", checkpoint, **sections)


def with_telegram(
    folder: Path, checkpoint: Path, base_url: str, port: int, **sections: Any
) -> dict[str, Any]:
    """A tiny config with Telegram at a fake Bot API and the HTTP server on ``port``."""
    return tiny(
        folder,
        checkpoint,
        telegram={"enabled": True, "api_base_url": base_url},
        http={"port": port},
        **sections,
    )


def write_config(folder: Path, raw: dict[str, Any], name: str = "config.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def run(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str = "",
    timeout: float = 180,
    python: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env if env is not None else offline_env(),
    )


def chat_log(folder: Path, checkpoint: Path) -> str:
    """``python -m bot chat`` from a tiny config with a DEBUG log file, one message answered: the log."""
    config = write_config(folder, tiny(folder, checkpoint, logging={"level": "DEBUG", "file": "bot.log"}))
    chat = run("chat", "--config", str(config), cwd=folder, stdin="Hello there\n")
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-3000:]
    return (folder / "bot.log").read_text()


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ERROR line of a run that failed for the environment (exit 2, no traceback)."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


async def start(
    *args: str, cwd: Path, log: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start `python -m bot ARGS` with its stderr in ``log`` (a file: a DEBUG log must never block)."""
    with log.open("w") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=cwd, env=env or offline_env(), stderr=sink
        )


async def start_daemon(
    folder: Path, raw: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, Path]:
    """`python -m bot run` from ``raw`` written to ``folder/config.yaml``; the process and its log."""
    log = folder / "daemon.log"
    process = await start("--config", str(write_config(folder, raw)), "run", cwd=folder, log=log, env=env)
    return process, log


async def exit_code(
    raw: dict[str, Any], folder: Path, log: Path, env: dict[str, str], timeout: float = 120
) -> int:
    """Run `python -m bot run` from ``raw`` until it exits by itself; its exit status."""
    daemon = await start("--config", str(write_config(folder, raw)), "run", cwd=folder, log=log, env=env)
    return await asyncio.wait_for(daemon.wait(), timeout)


async def health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status, await response.json()
    except aiohttp.ClientError:
        return None


async def wait_healthy(
    port: int, process: asyncio.subprocess.Process, log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.returncode is None, "the daemon exited: " + log.read_text()[-3000:]
        answer = await health(port)
        if answer is not None and answer[0] == 200:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the daemon never became healthy: " + log.read_text()[-3000:])


async def wait_for_log(log: Path, text: str, process: asyncio.subprocess.Process, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        assert process.returncode is None, "the daemon exited: " + content[-3000:]
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{text!r} never appeared in the log: " + log.read_text()[-3000:])


async def stop(process: asyncio.subprocess.Process, timeout: float = 60) -> int:
    if process.returncode is None:
        process.terminate()
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
