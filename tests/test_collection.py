"""The garbage collector paused while ``python -m bot`` starts, then the start's objects frozen."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import collection
from tests.cli import run, tiny, write_config


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
    raw = tiny(tmp_path, blenderbot_dir, logging={"level": "DEBUG", "file": "bot.log"})
    config = write_config(tmp_path, raw)
    chat = run("chat", "--config", str(config), cwd=tmp_path, stdin="Hello there\n")
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-3000:]
    log = (tmp_path / "bot.log").read_text()
    frozen = re.search(r"collection resumed; the (\d+) objects of the start are frozen", log)
    assert frozen is not None, log[-3000:]
    assert int(frozen.group(1)) > 100_000  # torch and Keras were imported before it resumed
    assert log.index("collection resumed") > log.index("ready on cpu")
