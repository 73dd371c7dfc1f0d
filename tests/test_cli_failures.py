"""Every environment problem through `python -m bot`, on a machine without network: one line with the
cause and the fix, exit 2, no traceback, no secret."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.cli import closed_port, offline_env, one_error, run, tiny, write_config


def test_hub_refused_fails_fast_with_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"data_dir": "data", "safety": {"classifier": {"enabled": False}}})
    for command in ("download", "chat"):
        started = time.monotonic()
        result = run("--config", str(config), command, cwd=tmp_path, stdin="hello\n")
        elapsed = time.monotonic() - started
        line = one_error(result)
        assert "cannot be reached" in line and "Connection refused" in line, line
        assert "python -m bot download" in line and "model.source" in line
        assert str(tmp_path / "data" / "models" / "facebook--blenderbot-400M-distill") in line
        assert "Retrying" not in result.stderr  # one request, no blind retries
        # One refused request, then the exit: the hub client's retries with backoff would take
        # minutes. The bound leaves room for a cold torch/Keras import on a loaded 2-core machine
        # (15-18 s measured there while another test run was going).
        assert elapsed < 40, f"{command} took {elapsed:.1f} s"


def test_hub_dns_failure_fails_fast(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"data_dir": "data", "safety": {"classifier": {"enabled": False}}})
    env = offline_env(HF_ENDPOINT="http://hub.blenderd-test.invalid")
    started = time.monotonic()
    line = one_error(run("--config", str(config), "download", cwd=tmp_path, env=env))
    assert "cannot be reached" in line and "hub.blenderd-test.invalid" in line
    assert time.monotonic() - started < 10


def test_classifier_files_unreachable(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = tiny(tmp_path, blenderbot_dir, safety={"classifier": {"enabled": True}})
    line = one_error(run("--config", str(write_config(tmp_path, raw)), "chat", cwd=tmp_path, stdin="hi\n"))
    assert "safety classifier could not be loaded" in line
    assert "checkpoint and config_folder" in line and "enabled: false" in line
    assert "alt-profanity-check" in line


def test_missing_model_folder_relative_to_the_config(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    config = write_config(
        folder, {"model": {"source": "./models/mine"}, "safety": {"classifier": {"enabled": False}}}
    )
    line = one_error(run("--config", str(config), "chat", cwd=tmp_path, stdin="hi\n"))
    assert f"folder not found: {folder / 'models' / 'mine'}" in line


def test_relative_model_folder_is_a_folder_not_a_hub_id(tmp_path: Path, blenderbot_dir: Path) -> None:
    folder = tmp_path / "conf"
    shutil.copytree(blenderbot_dir, folder / "models" / "mine")
    raw = {
        "data_dir": "state",
        "model": {"source": "models/mine", "device": "cpu", "generation": {"num_beams": 1, "max_length": 6}},
        "safety": {"classifier": {"enabled": False}},
    }
    config = write_config(folder, raw)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("--config", str(config), "chat", cwd=elsewhere, stdin="Hello there\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert (folder / "state" / "blenderd.sqlite3").exists()  # data_dir is relative to the config file
    assert not (elsewhere / "state").exists()


def test_broken_own_checkpoint_is_never_to_be_deleted(tmp_path: Path, blenderbot_dir: Path) -> None:
    own = tmp_path / "mine"
    shutil.copytree(blenderbot_dir, own)
    (own / "model.safetensors").write_bytes(b"\0" * 100)
    line = one_error(run("--config", str(write_config(tmp_path, tiny(tmp_path, own))), "chat", cwd=tmp_path))
    assert "model.safetensors cannot be read" in line and "your own folder" in line
    assert "delete" not in line


@pytest.mark.parametrize(
    "url",
    ["mysql://bot:pw@127.0.0.1/x", "postgresql+psycopg2://bot:pw@127.0.0.1/x", "not a url at all"],
)
def test_unsupported_database_urls(tmp_path: Path, blenderbot_dir: Path, url: str) -> None:
    config = write_config(tmp_path, tiny(tmp_path, blenderbot_dir, database={"url": url}))
    line = one_error(run("--config", str(config), "chat", cwd=tmp_path, stdin="hi\n"))
    assert "sqlite:///" in line and "postgresql://" in line
    assert ":pw@" not in line


def test_database_url_from_the_environment_is_shown_with_only_the_password_masked(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    port = closed_port()
    env = offline_env(BLENDERD_DATABASE_URL=f"postgres://bot:Sup3rSecret@127.0.0.1:{port}/blenderd")
    config = write_config(tmp_path, tiny(tmp_path, blenderbot_dir))
    result = run("--config", str(config), "chat", cwd=tmp_path, env=env, stdin="hi\n")
    line = one_error(result)
    assert f"postgresql+asyncpg://bot:***@127.0.0.1:{port}/blenderd" in line
    assert "database server is running" in line
    assert "Sup3rSecret" not in result.stdout + result.stderr


def test_port_in_use_names_http_port(tmp_path: Path, blenderbot_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        raw = tiny(tmp_path, blenderbot_dir, web={"enabled": True}, http={"port": port})
        line = one_error(run("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path))
    assert f"http.port {port} is already in use" in line and "set http.port" in line


def test_config_error_is_reported_without_importing_torch(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"model": {"dtype": "float64"}})
    result = run("--config", str(config), "chat", cwd=tmp_path, python=("-X", "importtime"))
    assert result.returncode == 2
    imported = {
        line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line
    }
    assert "torch" not in imported and "keras" not in imported
    assert "model.dtype" in result.stderr


def test_missing_token_is_reported_without_importing_torch(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = tiny(tmp_path, blenderbot_dir, telegram={"enabled": True})
    result = run(
        "--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, python=("-X", "importtime")
    )
    assert result.returncode == 2
    imported = {
        line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line
    }
    assert "torch" not in imported
    assert "TELEGRAM_TOKEN is not set" in result.stderr
