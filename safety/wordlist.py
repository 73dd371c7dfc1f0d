"""A fast offensive-phrase matcher over a shipped word list (better-profanity's, MIT licence).

Text is lowercased and de-leeted (``sh1t`` -> ``shit``, ``@ss`` -> ``ass``); a phrase matches as
whole words only, so "Scunthorpe", "assess" and "classic" never match. Each letter may be
stretched (``fuuuck``) or be starred out (``f*ck``), and common inflections match (``-s``, ``-ed``, ``-er``,
``-ing``...). An extra list adds phrases; an allow list removes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

DEFAULT_LIST = Path(__file__).resolve().parent / "data" / "offensive_phrases.txt"

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_SUFFIXES = r"(?:s|es|ed|er|ers|ing|in|ings|y|ies|head|heads|hole|holes)?"


def _letter(c: str) -> str:
    if c == " ":
        return r"[\s\-_.]*"  # "mother fucker", "mother-fucker", "motherfucker"
    if c.isalnum():
        # One letter (or a star), or a run of three or more ("fuuuck"): a run of two would let
        # "asses" match "assess".
        e = re.escape(c)
        return f"(?:\\*|{e}(?:{e}{{2,}})?)"
    return re.escape(c)


def load_phrases(path: Path = DEFAULT_LIST) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip().lower() for line in lines if line.strip() and not line.startswith("#")]


class PhraseMatcher:
    def __init__(self, phrases: Iterable[str], *, allow: Iterable[str] = ()) -> None:
        allowed = {a.strip().lower() for a in allow}
        self.phrases = sorted(
            {p.strip().lower() for p in phrases if p.strip()} - allowed, key=len, reverse=True
        )
        # Inflections only after a phrase not already ending in "s": "asses" + "s" would be "assess".
        alternatives = [
            "".join(_letter(c) for c in phrase) + ("" if phrase.endswith("s") else _SUFFIXES)
            for phrase in self.phrases
        ]
        body = "|".join(alternatives)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])") if body else None

    @classmethod
    def default(cls, *, extra: Iterable[str] = (), allow: Iterable[str] = ()) -> PhraseMatcher:
        return cls([*load_phrases(), *extra], allow=allow)

    @staticmethod
    def normalise(text: str) -> str:
        return text.lower().translate(_LEET)

    def find(self, text: str) -> str | None:
        """The first offensive phrase in ``text`` (as written there), or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(self.normalise(text))
        return match.group(0) if match else None

    def __contains__(self, text: str) -> bool:
        return self.find(text) is not None
