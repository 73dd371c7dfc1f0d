"""The heap's freed memory given back to the OS after generations (model.heap)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import model
from bot.worker import ModelWorker
from model.heap import Trimmer
from tests.helpers import CountingModel

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A clock that each release moves on by ``cost`` seconds."""

    def __init__(self, cost: float) -> None:
        self.now = 0.0
        self.cost = cost
        self.released = 0

    def __call__(self) -> float:
        return self.now

    def release(self) -> None:
        self.released += 1
        self.now += self.cost


def test_trims_spend_at_most_their_share_of_the_generation_time() -> None:
    clock = Clock(cost=0.010)
    costs: list[float] = []
    trimmer = Trimmer(0.01, release=clock.release, on_trim=costs.append, clock=clock)
    assert trimmer.after(0.2, idle=False)  # the first one measures what a trim costs
    assert costs == [pytest.approx(0.010)]
    # 10 ms per trim at 1%: the next is due after 1 s of generation, not before
    assert [trimmer.after(0.25, idle=False) for _ in range(4)] == [False, False, False, True]
    assert [trimmer.after(2.0, idle=False) for _ in range(3)] == [True, True, True]  # long batches: each
    assert clock.released == trimmer.trims == len(costs) == 5


def test_an_idle_model_trims_at_once() -> None:
    clock = Clock(cost=0.050)
    trimmer = Trimmer(0.01, release=clock.release, clock=clock)
    trimmer.after(0.01, idle=False)
    assert not trimmer.after(0.01, idle=False)
    assert trimmer.after(0.01, idle=True)  # nothing waits for the model: what the burst left goes back
    assert clock.released == 2


def test_the_share_must_be_a_fraction() -> None:
    for share in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            Trimmer(share)


def test_release_gives_freed_heap_pages_back_to_the_os() -> None:
    """glibc keeps freed chunks below its top in the heap, resident; the release hands them back.
    In a process of its own: 400 MB in 64 KiB chunks (below the mmap threshold), every chunk but
    each 16th freed, so the heap cannot simply shrink from its top."""
    script = textwrap.dedent(
        """
        import ctypes
        from model.heap import release_freed_memory

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024

        size = 64 * 1024
        chunks = [libc.malloc(size) for _ in range(6400)]
        for p in chunks:
            ctypes.memset(p, 1, size)
        for i, p in enumerate(chunks):
            if i % 16:
                libc.free(p)
        before = rss()
        release_freed_memory()
        print(before, rss())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    before, after = map(int, out.split())
    assert before - after > 300e6, (before, after)


async def test_the_model_worker_trims_in_its_thread_after_a_batch(blenderbot_dir: Path) -> None:
    released_in: list[int] = []
    counting: list[CountingModel] = []

    def load() -> CountingModel:
        counting.append(CountingModel(model.load(blenderbot_dir, device="cpu")))
        return counting[0]

    worker = ModelWorker(load, trimmer=Trimmer(release=lambda: released_in.append(threading.get_ident())))
    await worker.start()
    try:
        tokenizer = worker.model.tokenizer
        ids = [*tokenizer.encode_plain("hello there, how are you?"), tokenizer.eos_id]
        await asyncio.gather(*(worker.generate(ids) for _ in range(3)))
    finally:
        await worker.stop(timeout=10)
    assert released_in  # the worker went idle after its batches: trimmed at least once
    assert set(released_in) == counting[0].thread_ids  # in the model's thread, not the event loop's
    assert len(released_in) <= len(counting[0].calls)
