"""Freed memory given back to the OS, so the process's resident size shows what it keeps.

glibc keeps what a thread frees in that thread's arena and hands it out again in pieces: the
tensors of generations with ever different shapes (batch sizes, context lengths, beams) land in
ever different places of it, and the resident size grows although nothing stays alive. Measured
(400M int8, beam 10 x 20, batches of 1-8 chitchat-dataset contexts, 2-core AMD EPYC): 100
batches took the resident size from 994 to 1525 MiB with the heap's live bytes flat at 427-428
MiB; with ``malloc_trim`` after each batch (9.5-11 ms each) it stayed at 1011-1013 MiB.
:class:`Trimmer` does that after generations, within a share of their time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def release_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    glibc keeps what a thread freed in that thread's arena: after packing the int8 kernels (two
    threads) and writing their cache, 330 MB of freed int8 values stayed resident until trimmed.

    No ``gc.collect()`` first: in ``python -m bot``, where collection is paused for the start
    (:mod:`bot.collection`), it would walk every object the imports made (0.175 s of the cold
    start); the load leaves its large objects to reference counting (see :func:`model.load`)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (the model worker calls it after batches)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        return ctypes.CDLL("libc.so.6").malloc_trim
    return None


class Trimmer:
    """Releases freed memory (:func:`release_freed_memory`) after generations, spending on it at
    most ``share`` of the time spent generating, and once more whenever the model goes idle.

    Call :meth:`after` from the thread that generates, after each batch has been handed back:
    ``seconds`` is the batch's generation time, ``idle`` whether no request is waiting. A trim
    takes about 10 ms with the 400M model (a 2-core machine), so at the default 1% the model
    trims after every batch of a second or more and a small model once per second of work; when
    idle, nothing is waiting for the model, and what the burst left is given back at once.
    ``on_trim`` receives each trim's duration (the daemon's metrics)."""

    def __init__(
        self,
        share: float = 0.01,
        *,
        release: Callable[[], None] = release_freed_memory,
        on_trim: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.share = share
        self._release = release
        self._on_trim = on_trim
        self._clock = clock
        self._cost = 0.0  # the last trim's duration
        self._since = 0.0  # generation seconds since the last trim
        self.trims = 0

    def after(self, seconds: float, *, idle: bool) -> bool:
        """Account ``seconds`` of generation; trim if due. Returns whether it trimmed."""
        self._since += seconds
        if not idle and self._since * self.share < self._cost:
            return False
        started = self._clock()
        self._release()
        self._cost = self._clock() - started
        self._since = 0.0
        self.trims += 1
        logger.debug("heap trimmed in %.1f ms", self._cost * 1000)
        if self._on_trim is not None:
            self._on_trim(self._cost)
        return True
