"""The garbage collector paused while ``python -m bot`` starts, then the start's objects frozen."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import collection
from tests.cli import chat_log, offline_env, tiny, write_config


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    collection._paused = False
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()
    if enabled:
        gc.enable()


def test_paused_until_started_then_frozen(collector: None) -> None:
    gc.enable()
    before = gc.get_freeze_count()
    collection.pause()
    assert not gc.isenabled()
    kept: list[list[int]] = [[] for _ in range(1000)]  # objects the start makes
    collection.started()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(kept)


def test_started_does_nothing_where_nothing_paused(collector: None) -> None:
    """An App built by hand (tests, embedding) leaves the collector as its process set it."""
    gc.enable()
    before = gc.get_freeze_count()
    collection.started()
    assert gc.isenabled() and gc.get_freeze_count() == before
    gc.disable()
    collection.started()
    assert not gc.isenabled()


def test_a_collector_the_process_disabled_stays_disabled(collector: None) -> None:
    gc.disable()
    before = gc.get_freeze_count()
    collection.pause()
    collection.started()
    assert not gc.isenabled() and gc.get_freeze_count() == before


def test_bot_chat_starts_with_the_collector_paused(tmp_path: Path, blenderbot_dir: Path) -> None:
    """``python -m bot chat``: the start (torch, Keras, the model) runs with the collector paused,
    and its objects are frozen before the first message is answered."""
    log = chat_log(tmp_path, blenderbot_dir)
    frozen = re.search(r"collection resumed; the (\d+) objects of the start are frozen", log)
    assert frozen is not None, log[-3000:]
    assert int(frozen.group(1)) > 100_000  # torch and Keras were imported before it resumed
    assert log.index("collection resumed") > log.index("ready on cpu")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/<pid>/maps")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_the_checkpoint_is_not_kept_by_the_frozen_start(
    tmp_path: Path, blenderbot_dir: Path, dtype: str
) -> None:
    """What the start frees goes by reference counting, not to the paused collector (whose
    garbage the freeze would keep for good): once ``python -m bot chat`` has answered (and, for
    int8, written its kernel cache), the checkpoint file is no longer mapped in the process. It
    was: the frame that first imported torch held it, and torch keeps that frame in a cycle."""
    raw = tiny(tmp_path, blenderbot_dir)
    raw["model"]["dtype"] = dtype
    config = write_config(tmp_path, raw)
    weights = str((blenderbot_dir / "model.safetensors").resolve())
    chat = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert chat.stdin is not None and chat.stdout is not None  # both are pipes
    try:
        chat.stdin.write("Hello there\n")
        chat.stdin.flush()
        assert chat.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while dtype == "int8" and not list((tmp_path / "data" / "int8").glob("*.safetensors")):
            assert time.monotonic() < deadline, "no int8 cache written"
            time.sleep(0.05)
        while weights in (maps := Path(f"/proc/{chat.pid}/maps").read_text()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert weights not in maps
    finally:
        _, errors = chat.communicate("", timeout=60)
    assert chat.returncode == 0, errors[-3000:]
