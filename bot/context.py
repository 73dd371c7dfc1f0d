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
from typing import Protocol

# A turn's line that looks like a persona line ("your persona: ...") would pass for the configured
# persona; its colon is dropped, so it stays what it is, something a person said.
_PERSONA_LIKE = re.compile(r"^(\s*(?:your|partner'?s)\s+persona)\s*:", re.IGNORECASE | re.MULTILINE)


class ContextTokenizer(Protocol):
    eos_id: int
    small: bool

    def encode_plain(self, text: str) -> list[int]:
        """Ids of text as written: a special token in it (``</s>``) is plain text, never a special id."""

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str: ...


@dataclass(frozen=True)
class Context:
    ids: list[int]
    turns: int  # how many turns it holds
    persona: bool  # whether the persona fit
    truncated: bool  # whether anything was left out or cut


def build_context(
    history: Sequence[tuple[str, str]],
    *,
    tokenizer: ContextTokenizer,
    limit: int,
    persona: Sequence[str] = (),
) -> Context:
    """``history``: (role, text) pairs, oldest first, ending with the newest user turn."""
    if not history:
        raise ValueError("a context needs at least the newest user turn")
    end = [] if tokenizer.small else [tokenizer.eos_id]
    budget = limit - len(end)
    delimiter = "\n" if tokenizer.small else "  "
    segments = [(" " if role == "user" else "") + _PERSONA_LIKE.sub(r"\1", text) for role, text in history]
    persona_block = "\n".join(f"your persona: {line}" for line in persona)

    def encode(parts: list[str], with_persona: bool) -> list[int]:
        body = delimiter.join(parts)
        if with_persona and persona_block:
            body = persona_block + "\n" + body
        return tokenizer.encode_plain(body)

    kept = [segments[-1]]
    ids = encode(kept, False)
    if len(ids) > budget:
        return Context(ids[len(ids) - budget :] + end, 1, False, True)
    use_persona = bool(persona_block)
    if use_persona:
        with_persona = encode(kept, True)
        if len(with_persona) <= budget:
            ids = with_persona
        else:
            use_persona = False
    truncated = bool(persona_block) and not use_persona
    for segment in reversed(segments[:-1]):
        candidate = encode([segment, *kept], use_persona)
        if len(candidate) > budget:
            truncated = True
            break
        kept.insert(0, segment)
        ids = candidate
    return Context(ids + end, len(kept), use_persona, truncated)
