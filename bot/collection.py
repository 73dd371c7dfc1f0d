"""The cyclic garbage collector, paused while a ``python -m bot`` command starts.

Importing torch and Keras creates 600,000-700,000 objects that live as long as the process (modules,
functions, classes). With automatic collection on, the collector walks them again and again while
they pile up: ``import torch, keras`` took 2.2-2.6 s with it and 1.7-2.0 s without (AMD EPYC, 2
cores, 2026-12-06). Once the command has started they are frozen (``gc.freeze``), so that later
full collections, which run on the event loop between replies, skip them (one full collection
over them took 0.175 s).

Cost: cyclic garbage made during the start is frozen with the rest and never freed, so nothing
large may be left to the collector. Something was, until 2026-12-06: the checkpoint, a local of
``model.load``, whose frame a cycle made by torch's imports kept (see :func:`model.load`); a first
start of ``bot chat`` held 2.6 GB instead of 0.8 GB (400M, int8). ``tests/test_collection.py``
checks that the checkpoint is no longer mapped once a chat has started. What the start leaves to
the collector now: about 11,300 objects, whose collection frees no resident memory of note.

Process-wide, so only the command line pauses (:func:`pause`); :func:`started` does nothing in a
process that did not, so an :class:`~bot.app.App` built by hand leaves the collector as it is.
Both are called from the main thread only.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

_paused = False


def pause() -> None:
    """Stop automatic collection until :func:`started` (reference counting still frees most)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def started() -> None:
    """The start is over: freeze what it made, and collect automatically again."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
        if logger.isEnabledFor(logging.DEBUG):  # counting walks them all: 0.05-0.1 s
            logger.debug("collection resumed; the %d objects of the start are frozen", gc.get_freeze_count())
