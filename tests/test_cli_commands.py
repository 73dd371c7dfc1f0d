"""The CLI as the README documents it: --version, --config anywhere, BLENDERD_CONFIG, help texts,
check-config, the admin commands and the console chat, each through `python -m bot`."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import offline_env, run, tiny, write_config

POSTGRES = os.environ.get("BLENDERD_TEST_POSTGRES_URL")


def test_version_and_help(tmp_path: Path) -> None:
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("blenderd 0.")
    top = run("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("chat", "run", "download", "healthcheck", "check-config", "admin"):
        assert command in top.stdout
    run_help = run("run", "--help", cwd=tmp_path).stdout
    assert "shutdown.grace_seconds" in run_help and "--config" in run_help
    assert "SQLite's online backup" in run("admin", "backup", "--help", cwd=tmp_path).stdout


def test_config_after_the_subcommand_and_from_the_environment(tmp_path: Path, blenderbot_dir: Path) -> None:
    config = write_config(tmp_path / "conf", tiny(tmp_path, blenderbot_dir))
    after = run("check-config", "--config", str(config), cwd=tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"model: checkpoint folder {blenderbot_dir}" in after.stdout
    from_env = run("check-config", cwd=tmp_path, env=offline_env(BLENDERD_CONFIG=str(config)))
    assert from_env.returncode == 0 and from_env.stdout == after.stdout
    missing = run("check-config", cwd=tmp_path, env=offline_env(BLENDERD_CONFIG=str(tmp_path / "nope.yaml")))
    assert missing.returncode == 2 and "nope.yaml does not exist" in missing.stderr


def test_check_config_names_each_problem(tmp_path: Path) -> None:
    raw = {
        "model": {"source": "./no-such-model"},
        "telegram": {"enabled": True},
        "database": {"url": "mysql://x@127.0.0.1/db"},
        "safety": {"classifier": {"checkpoint": "missing.ckpt"}},
    }
    started = time.monotonic()
    result = run("check-config", "--config", str(write_config(tmp_path, raw)), cwd=tmp_path)
    assert result.returncode == 2
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem")]
    assert len(problems) == 4, result.stdout
    assert "TELEGRAM_TOKEN is not set" in problems[0]
    assert "does not support" in problems[1]
    assert f"folder not found: {tmp_path / 'no-such-model'}" in problems[2]
    assert f"checkpoint not found: {tmp_path / 'missing.ckpt'}" in problems[3]
    assert time.monotonic() - started < 10  # no torch, no weights


@pytest.mark.skipif(POSTGRES is None, reason="BLENDERD_TEST_POSTGRES_URL is not set (.ci/run sets it)")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgres_urls_use_asyncpg(tmp_path: Path, scheme: str) -> None:
    assert POSTGRES is not None
    url = scheme + "://" + POSTGRES.split("://", 1)[1]
    raw = {"database": {"url": url}, "safety": {"classifier": {"enabled": False}}}
    result = run("admin", "stats", "--config", str(write_config(tmp_path, raw)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check = run("check-config", "--config", str(tmp_path / "config.yaml"), cwd=tmp_path)
    assert "database: postgresql+asyncpg://" in check.stdout and " answers" in check.stdout


def test_console_and_admin_commands(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = tiny(tmp_path, blenderbot_dir, rate_limit={"messages": 1, "per_seconds": 3600})
    config = str(write_config(tmp_path, raw))
    chat = run(
        "chat", "--config", config, cwd=tmp_path, stdin="/help\nHello there\nHow are you?\nI like dogs\n"
    )
    assert chat.returncode == 0, chat.stderr
    lines = chat.stdout.splitlines()
    assert len(lines) == 4 and "/quit" in lines[0]
    assert not any("faster than I can answer" in line for line in lines)  # the console is not rate-limited
    assert " INFO " not in chat.stderr  # the terminal is for the conversation

    stats = run("admin", "stats", "--config", config, cwd=tmp_path)
    assert stats.returncode == 0
    assert stats.stdout.split("\n")[1].split() == ["console", "1", "1", "6"]
    export = run(
        "admin", "export", "--platform", "console", "--user", "local", "--config", config, cwd=tmp_path
    )
    document = json.loads(export.stdout)
    assert [t["text"] for t in document["conversations"][0]["turns"] if t["role"] == "user"] == [
        "Hello there",
        "How are you?",
        "I like dogs",
    ]
    backup = tmp_path / "backup.sqlite3"
    result = run("admin", "backup", str(backup), "--config", config, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM turns").fetchone() == (6,)
    again = run("admin", "backup", str(backup), "--config", config, cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr
    purge = run("admin", "purge", "--older-than", "30", "--config", config, cwd=tmp_path)
    assert purge.stdout.strip() == "deleted 0 messages older than 30 days"
    forget = run(
        "admin", "forget", "--platform", "console", "--user", "local", "--config", config, cwd=tmp_path
    )
    assert forget.stdout.strip() == "deleted 6 messages of console user local"
    assert run("admin", "stats", "--config", config, cwd=tmp_path).stdout.strip() == "nothing stored yet"


def test_postgres_backup_prints_pg_dump(tmp_path: Path) -> None:
    env = offline_env(BLENDERD_DATABASE_URL="postgresql://bot:Hidden-Pass-99@db.example:5432/blenderd")
    result = run("admin", "backup", "out.dump", cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert (
        "pg_dump --format=custom --file=out.dump 'postgresql://bot@db.example:5432/blenderd'" in result.stdout
    )
    assert "Hidden-Pass-99" not in result.stdout + result.stderr


def _read_until(fd: int, text: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {text!r}: {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_interactive_console_answers_and_ctrl_c_leaves_at_once(tmp_path: Path, blenderbot_dir: Path) -> None:
    config = str(write_config(tmp_path, tiny(tmp_path, blenderbot_dir)))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--config", config],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=tmp_path,
        env=offline_env(),
    )
    os.close(terminal)
    try:
        _read_until(controller, b"you> ", 120)
        os.write(controller, b"/help\r")
        assert b"/quit" in _read_until(controller, b"you> ", 60)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends, while it waits for a line
        started = time.monotonic()
        code = process.wait(timeout=10)
        assert code == 130 and time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    assert (tmp_path / "data" / "console_history").exists()  # readline's history, for the next time


def test_the_default_dtype_is_int8_on_a_cpu(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = {
        "model": {"source": str(blenderbot_dir), "generation": {"num_beams": 2, "max_length": 8}},
        "logging": {"file": "bot.log"},
        "safety": {"classifier": {"enabled": False}},
    }
    result = run("chat", "--config", str(write_config(tmp_path, raw)), cwd=tmp_path, stdin="Hello there\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "ready on cpu (int8)" in (tmp_path / "bot.log").read_text()  # logging.file gets the INFO lines
