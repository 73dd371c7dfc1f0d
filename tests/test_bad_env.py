"""Bad configuration and environment: one line naming the cause and the fix, a non-zero exit,
nothing half-written."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def run_bot(
    config: dict[str, Any] | None,
    tmp_path: Path,
    *args: str,
    config_path: Path | None = None,
    env: dict[str, str] | None = None,
    fsize: int | None = None,
) -> subprocess.CompletedProcess[str]:
    if config_path is None:
        config_path = tmp_path / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))

    def limit() -> None:
        if fsize is not None:  # a full disk: writes past this size fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    base = {k: v for k, v in os.environ.items() if k not in ("TELEGRAM_TOKEN", "DISCORD_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config_path), *args],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**base, **(env or {})},
        preexec_fn=limit,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if " ERROR " in line or "Traceback" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def base_config(tmp_path: Path, checkpoint: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path / "data"),
        "model": {"source": str(checkpoint), "device": "cpu"},
        "safety": {"classifier": {"enabled": False}},
        **extra,
    }


def test_missing_token_for_an_enabled_platform(tmp_path: Path, blenderbot_dir: Path) -> None:
    config = base_config(tmp_path, blenderbot_dir, telegram={"enabled": True})
    line = one_line_error(run_bot(config, tmp_path, "run"))
    assert "telegram is enabled in the config but TELEGRAM_TOKEN is not set" in line
    assert "export TELEGRAM_TOKEN=" in line and "telegram.enabled: false" in line
    assert not (tmp_path / "data").exists()  # failed before touching anything


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "a-folder.yaml").mkdir()
    line = one_line_error(run_bot(None, tmp_path, "chat", config_path=tmp_path / "a-folder.yaml"))
    assert "cannot be read" in line and "a-folder.yaml" in line


def test_data_dir_that_cannot_be_created(tmp_path: Path, blenderbot_dir: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = base_config(tmp_path, blenderbot_dir, data_dir=str(tmp_path / "a-file" / "data"))
    line = one_line_error(run_bot(config, tmp_path, "chat"))
    assert "data_dir" in line and "Not a directory" in line and "writable folder" in line


def test_full_data_dir(tmp_path: Path, blenderbot_dir: Path) -> None:
    line = one_line_error(run_bot(base_config(tmp_path, blenderbot_dir), tmp_path, "chat", fsize=4096))
    assert "cannot open the database" in line and "not full" in line


def test_unreachable_database(tmp_path: Path, blenderbot_dir: Path) -> None:
    config = base_config(
        tmp_path, blenderbot_dir, database={"url": "postgresql+asyncpg://bot:s3cret@127.0.0.1:9/x"}
    )
    line = one_line_error(run_bot(config, tmp_path, "chat"))
    assert "cannot open the database postgresql+asyncpg://bot:***@127.0.0.1:9/x" in line
    assert "s3cret" not in line and "database server is running" in line


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_weights(tmp_path: Path, blenderbot_dir: Path, damage: str) -> None:
    folder = tmp_path / "ck"
    shutil.copytree(blenderbot_dir, folder)
    weights = folder / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"\x00" * 1000)
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = one_line_error(run_bot(base_config(tmp_path, folder), tmp_path, "chat"))
    assert "model.safetensors cannot be read" in line and "replace it with a complete checkpoint" in line
    assert "delete" not in line
