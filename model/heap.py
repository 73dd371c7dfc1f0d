"""Freed memory given back to the OS, so the process's resident size shows what it keeps."""

from __future__ import annotations

import contextlib
import ctypes


def release_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    glibc keeps what a thread freed in that thread's arena: after packing the int8 kernels (two
    threads) and writing their cache, 330 MB of freed int8 values stayed resident until trimmed.

    No ``gc.collect()`` first: in ``python -m bot``, where collection is paused for the start
    (:mod:`bot.collection`), it would walk every object the imports made (0.175 s of the cold
    start); the load leaves its large objects to reference counting (see :func:`model.load`)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
