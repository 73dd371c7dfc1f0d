"""The console chat end to end: `python -m bot chat` in a subprocess, on a tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def chat(config: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "chat"],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )


def test_piped_console_chat_remembers_across_restarts(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> None:
    config = tmp_path / "config.yaml"
    checkpoint, config_folder = detoxify_files
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "model": {
                    "source": str(blenderbot_dir),
                    "device": "cpu",
                    "generation": {"num_beams": 2, "max_length": 10},
                },
                "safety": {
                    "classifier": {"checkpoint": str(checkpoint), "config_folder": str(config_folder)}
                },
            }
        )
    )
    first = chat(config, ["Hello, how are you doing today?", "", "I love walking my dog in the park"])
    assert first.returncode == 0, first.stderr
    replies = first.stdout.splitlines()
    assert len(replies) == 2  # one line per non-empty input line
    assert "Hello, how are you doing today?" not in first.stderr  # message text is not logged

    second = chat(config, ["/export"])
    assert second.returncode == 0, second.stderr
    document = json.loads(second.stdout.strip())
    turns = document["conversations"][0]["turns"]
    assert [t["text"] for t in turns if t["role"] == "user"] == [
        "Hello, how are you doing today?",
        "I love walking my dog in the park",
    ]
    assert [t["role"] for t in turns] == ["user", "bot", "user", "bot"]


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  dtype: float8\n")
    result = chat(config, ["hi"])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.dtype" in lines[0], result.stderr


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "model": {"device": "cpu"},
                "safety": {"classifier": {"enabled": False}},
            }
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "download"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 2
    assert "copy a checkpoint folder" in result.stderr


def test_help_everywhere() -> None:
    for args in ([], ["chat"], ["run"], ["download"]):
        result = subprocess.run(
            [sys.executable, "-m", "bot", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert result.returncode == 0 and "usage: python -m bot" in result.stdout
