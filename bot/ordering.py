"""Per-conversation order: a place in line is taken at once, in arrival order, and waited for later.

``place = order.take(key)`` is synchronous, so whoever calls it first is served first, whatever
happens between taking the place and ``async with place``. Recovery takes one place per
conversation for all of that conversation's unanswered messages before the platform's intake
starts, so newer messages of the conversation queue behind them. A place that is given up
(cancelled while waiting, or never entered) passes its turn on; nobody waits for it forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class Place:
    """A turn in one conversation's line; use it once, as ``async with place:``."""

    def __init__(self, line: ConversationOrder, key: Hashable, before: asyncio.Future[None] | None) -> None:
        self._line = line
        self._key = key
        self._before = before
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __aenter__(self) -> None:
        if self._before is None or self._before.done():
            return
        try:
            await asyncio.shield(self._before)
        except asyncio.CancelledError:
            self.release()
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give the turn to the next in line, now or, when the one before has not finished, then."""
        if self.done.done():
            return
        before = self._before
        if before is None or before.done():
            self._finish()
        else:
            before.add_done_callback(lambda _: self._finish())

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self._line._finished(self._key, self.done)


class ConversationOrder:
    def __init__(self) -> None:
        self._last: dict[Hashable, asyncio.Future[None]] = {}

    def take(self, key: Hashable) -> Place:
        place = Place(self, key, self._last.get(key))
        self._last[key] = place.done
        return place

    def _finished(self, key: Hashable, done: asyncio.Future[None]) -> None:
        if self._last.get(key) is done:  # the last in line: the conversation is idle
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)
