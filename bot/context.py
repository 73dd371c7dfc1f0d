"""Build the model input from stored turns, in Blenderbot's format, within the position limit.

Format (as transformers' conversational pipeline and ParlAI): persona lines first
(``your persona: ...``, one per line), then the turns, user turns with a leading space, joined by
two spaces (a newline for BlenderbotSmall), then the end token. Whole turns are kept newest
first while they fit; the newest user turn is always kept and, only if it alone is too long, cut
from the left by whole tokens. Strings are tokenized whole, so no token is ever cut in half, and
as plain text: a special token or a persona line typed by a person stays plain text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.sections import MemoryConfig

# A turn's line that looks like a persona line ("your persona: ...") would pass for the configured
# persona; its colon is dropped, so it stays what it is, something a person said.
_PERSONA_LIKE = re.compile(r"^(\s*(?:your|partner'?s)\s+persona)\s*:", re.IGNORECASE | re.MULTILINE)


class ContextTokenizer(Protocol):
    eos_id: int
    small: bool

    def encode_plain(self, text: str) -> list[int]:
        """Ids of text as written: a special token in it (``</s>``) is plain text, never a special id."""

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str: ...


class ContextModel(Protocol):
    """What a context is built for: the model's tokenizer and position limit."""

    @property
    def tokenizer(self) -> ContextTokenizer: ...

    @property
    def max_positions(self) -> int: ...


@dataclass(frozen=True)
class Context:
    ids: list[int]
    turns: int  # how many turns of the recent history it holds
    persona: bool  # whether the persona fit
    truncated: bool  # whether anything was left out or cut
    remembered: tuple[str, ...] = ()  # the remembered material it holds, oldest first
    memory_tokens: int = 0  # what that material costs, encoded on its own


class Recollection(Protocol):
    """A piece of remembered material (memory.recall.Remembered)."""

    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str | None: ...  # the turn it came from
    @property
    def at(self) -> int: ...  # its place in time: material enters oldest first


def build_context(
    history: Sequence[tuple[str, str]],
    *,
    tokenizer: ContextTokenizer,
    limit: int,
    persona: Sequence[str] = (),
    remembered: Sequence[Recollection] = (),
    memory_tokens: int = 0,
    memory_style: str = "turns",
) -> Context:
    """``history``: (role, text) pairs, oldest first, ending with the newest user turn.

    ``remembered``: material from long-term memory, most relevant first. Whole pieces go in, in
    that order, while the block costs at most ``memory_tokens`` tokens; a piece whose source turn
    the recent history shows is left out. It enters oldest first, before the recent turns: as
    earlier user turns (``memory_style`` "turns") or as ``partner's persona:`` lines
    ("partner_persona"). The newest user turn and the persona come first; the recent turns fill
    what is left, newest first.
    """
    if not history:
        raise ValueError("a context needs at least the newest user turn")
    end = [] if tokenizer.small else [tokenizer.eos_id]
    budget = limit - len(end)
    delimiter = "\n" if tokenizer.small else "  "
    texts = [text for _, text in history]
    segments = [(" " if role == "user" else "") + _plain(text) for role, text in history]
    persona_lines = [f"your persona: {line}" for line in persona]
    as_lines = memory_style == "partner_persona"

    def body(persona_used: bool, memory: Sequence[Recollection], recent: list[str]) -> str:
        lines = list(persona_lines) if persona_used else []
        turns = list(recent)
        if as_lines:
            lines += [f"partner's persona: {_plain(m.text)}" for m in memory]
        else:
            turns = [" " + _plain(m.text) for m in memory] + turns
        text = delimiter.join(turns)
        return "\n".join(lines) + "\n" + text if lines else text

    def encode(persona_used: bool, memory: Sequence[Recollection], recent: list[str]) -> list[int]:
        return tokenizer.encode_plain(body(persona_used, memory, recent))

    def cost(memory: Sequence[Recollection]) -> int:
        if not memory:
            return 0
        if as_lines:
            return len(
                tokenizer.encode_plain("\n".join(f"partner's persona: {_plain(m.text)}" for m in memory))
            )
        return len(tokenizer.encode_plain(delimiter.join(" " + _plain(m.text) for m in memory)))

    newest = [segments[-1]]
    ids = encode(False, (), newest)
    if len(ids) > budget:
        return Context(ids[len(ids) - budget :] + end, 1, False, True)
    use_persona = bool(persona_lines) and len(encode(True, (), newest)) <= budget
    shown: set[str] = set()  # sources the recent turns show
    while True:
        memory: list[Recollection] = []
        for piece in remembered:
            if (piece.source is not None and piece.source in shown) or piece.text in shown:
                continue
            if cost([piece]) > memory_tokens:  # cheap: too long on its own
                continue
            trial = sorted([*memory, piece], key=lambda m: m.at)
            if cost(trial) <= memory_tokens and len(encode(use_persona, trial, newest)) <= budget:
                memory = trial
        kept, ids = list(newest), encode(use_persona, memory, newest)
        truncated = bool(persona_lines) and not use_persona
        for index in range(len(segments) - 2, -1, -1):
            candidate = encode(use_persona, memory, [segments[index], *kept])
            if len(candidate) > budget:
                truncated = True
                break
            kept.insert(0, segments[index])
            ids = candidate
        visible = set(texts[len(texts) - len(kept) :])
        repeated = {
            m.source or m.text for m in memory if (m.source or m.text) in visible or m.text in visible
        }
        if not repeated:
            break
        shown |= repeated | visible
    return Context(ids + end, len(kept), use_persona, truncated, tuple(m.text for m in memory), cost(memory))


def _plain(text: str) -> str:
    return _PERSONA_LIKE.sub(r"\1", text)


@dataclass(frozen=True)
class ContextBuilder:
    """Model inputs for one model: its tokenizer and position limit, the persona and the memory
    settings, fixed at start; :meth:`build` is what the chat core calls for each message."""

    tokenizer: ContextTokenizer
    limit: int
    persona: Sequence[str] = ()
    memory_tokens: int = 0
    memory_style: str = "turns"

    @classmethod
    def for_model(cls, model: ContextModel, persona: Sequence[str], memory: MemoryConfig) -> ContextBuilder:
        """The builder for a loaded model, with the config's persona and memory settings."""
        return cls(model.tokenizer, model.max_positions, persona, memory.budget_tokens, memory.style)

    def build(self, history: Sequence[tuple[str, str]], remembered: Sequence[Recollection] = ()) -> Context:
        return build_context(
            history,
            tokenizer=self.tokenizer,
            limit=self.limit,
            persona=self.persona,
            remembered=remembered,
            memory_tokens=self.memory_tokens,
            memory_style=self.memory_style,
        )

    def decode(self, ids: list[int]) -> str:
        """The input as the model reads it, special tokens included (for the DEBUG log line)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False)
