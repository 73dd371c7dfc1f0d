"""Int8 kernels packed from the checkpoint at load, and their cache in ``data_dir/int8``."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import model
import model.int8
import model.int8_cache
from model.int8 import sequence_engine
from tests.cli import run, tiny, write_config

TEXT = "I love dogs and cats. Do you have any pets at home?"


def logits(bot: model.Blenderbot) -> np.ndarray:
    ids = [bot.tokenizer.encode(TEXT)]
    return bot.logits(ids, [[bot.config.decoder_start_token_id, *ids[0][:6]]])


def cache_files(directory: Path, timeout: float = 60) -> list[Path]:
    """The cache files once written (the write runs in a thread after the load returns)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(directory.glob("*.safetensors"))
        if files:
            return files
        time.sleep(0.05)
    return []


def test_kernels_packed_from_the_checkpoint_equal_those_packed_from_the_model(checkpoint_dir: Path) -> None:
    """``model.load`` packs int8 kernels from the checkpoint's tensors while Keras loads; packing
    the same network's float32 variables gives the same logits, bit for bit."""
    loaded = model.load(checkpoint_dir, device="cpu", dtype="int8")
    built = model.load(checkpoint_dir, device="cpu", dtype="float32")
    built.backbone.quantize_int8(sequence_engine=sequence_engine())
    assert np.array_equal(logits(loaded), logits(built))


def test_the_cache_is_written_then_read_with_the_same_logits(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "int8"
    first = model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=directory)
    files = cache_files(directory)
    assert len(files) == 1 and files[0].name.startswith(blenderbot_dir.name)
    assert not list(directory.glob("*.partial"))

    def no_quantising(kernel: object) -> None:
        raise AssertionError("a cached kernel was quantised again")

    monkeypatch.setattr(model.int8, "quantise", no_quantising)
    second = model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=directory)
    assert np.array_equal(logits(first), logits(second))


@pytest.mark.parametrize("damage", ["garbage", "other network"])
def test_a_bad_cache_is_a_warning_and_is_rewritten(
    tmp_path: Path,
    blenderbot_dir: Path,
    blenderbot_small_dir: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    directory = tmp_path / "int8"
    reference = logits(model.load(blenderbot_dir, device="cpu", dtype="int8"))
    model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=directory)
    (path,) = cache_files(directory)
    if damage == "garbage":
        path.write_bytes(b"\x00" * 100)
        expected = "cannot be read"
    else:  # a file of the right name holding another network's kernels
        model.load(blenderbot_small_dir, device="cpu", dtype="int8", int8_cache=tmp_path / "small")
        (small,) = cache_files(tmp_path / "small")
        path.write_bytes(small.read_bytes())
        expected = "does not fit this network"
    written = path.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="model.int8_cache"):
        again = model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=directory)
    assert np.array_equal(logits(again), reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and expected in warnings[0], warnings
    deadline = time.monotonic() + 60
    while path.stat().st_mtime_ns == written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_mtime_ns != written  # rewritten for the next start
    model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=directory)  # reads it now


def test_a_cache_that_cannot_be_written_is_a_warning(
    tmp_path: Path, blenderbot_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    with caplog.at_level(logging.WARNING, logger="model.int8_cache"):
        bot = model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=blocked)
        deadline = time.monotonic() + 60
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(logits(bot)) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "cannot be written" in messages[0], messages
    assert blocked.read_text() == "a file where the cache folder would be"


def test_a_changed_checkpoint_gets_a_new_cache(tmp_path: Path, blenderbot_dir: Path) -> None:
    import shutil

    folder = tmp_path / "ck"
    shutil.copytree(blenderbot_dir, folder)
    directory = tmp_path / "int8"
    model.load(folder, device="cpu", dtype="int8", int8_cache=directory)
    (before,) = cache_files(directory)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # the same bytes, a new modification time
    model.load(folder, device="cpu", dtype="int8", int8_cache=directory)
    deadline = time.monotonic() + 60
    while len(cache_files(directory)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert before in cache_files(directory) and len(cache_files(directory)) == 2


def test_the_cache_writer_is_waited_for_at_exit(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is not a daemon thread (it is started by the packing thread, which is one, and
        would inherit that): the interpreter waits for it, so a process that exits right after its
        first reply still leaves the whole file. It runs at the lowest priority, and lets the values go
    once they are written."""
    writing, finish = threading.Event(), threading.Event()
    write = model.int8_cache.KernelCache.write
    priority: list[int] = []

    given: list[Any] = []

    def held_write(self: model.int8_cache.KernelCache, quantised: Any) -> None:
        given.append(quantised)
        priority.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        writing.set()
        finish.wait(30)
        write(self, quantised)

    monkeypatch.setattr(model.int8_cache.KernelCache, "write", held_write)
    model.load(blenderbot_dir, device="cpu", dtype="int8", int8_cache=tmp_path / "int8")
    assert writing.wait(30)
    (writer,) = [t for t in threading.enumerate() if t.name == "int8-cache-write"]
    finish.set()
    assert not writer.daemon
    writer.join(30)
    assert len(cache_files(tmp_path / "int8")) == 1
    assert priority == [19]  # the first reply, computed meanwhile, goes first
    assert given and not given[0]  # written, the int8 values are let go (365 MB for 400M)


def test_bot_chat_caches_the_kernels_for_its_next_start(tmp_path: Path, blenderbot_dir: Path) -> None:
    """Two starts of ``python -m bot chat`` from one config: the first exits right after its reply
    and still leaves the cache (its writer is waited for at exit), the second packs from it."""
    raw = tiny(
        tmp_path,
        blenderbot_dir,
        logging={"level": "DEBUG", "file": "bot.log"},
    )
    raw["model"]["dtype"] = "int8"
    config = write_config(tmp_path, raw)
    first = run("chat", "--config", str(config), cwd=tmp_path, stdin="Hello there\n")
    assert first.returncode == 0 and first.stdout.strip(), first.stderr[-3000:]
    files = list((tmp_path / "data" / "int8").glob("*"))
    assert len(files) == 1 and files[0].suffix == ".safetensors", files
    log = tmp_path / "bot.log"
    assert "quantised from the checkpoint" in log.read_text()
    log.unlink()
    second = run("chat", "--config", str(config), cwd=tmp_path, stdin="Hello again\n")
    assert second.returncode == 0 and second.stdout.strip(), second.stderr[-3000:]
    assert "values from the cache" in log.read_text()
    assert "Traceback" not in first.stderr + second.stderr
