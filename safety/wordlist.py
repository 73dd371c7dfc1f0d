"""A fast offensive-phrase matcher over the shipped, curated word lists (from better-profanity, MIT).

The lists are by category in ``safety/data``: ``slurs.txt``, ``sexual.txt`` and ``profanity.txt``,
each with the reason for its category in its header. Words that are offensive only in context
(identity words, anatomy, names, everyday words, mild swearing) are not in them: see
``left_to_the_classifier.txt``. Text is normalised first (:mod:`safety.normalise`); a phrase
matches as whole words only, so "Scunthorpe", "assess" and "classic" never match. Each letter may
be stretched (``fuuuck``) or be starred out (``f*ck``), and common inflections match (``-s``,
``-ed``, ``-er``, ``-ing``...). An extra list adds phrases; an allow list removes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from safety.normalise import normalise

DATA = Path(__file__).resolve().parent / "data"
CATEGORIES = ("slurs", "sexual", "profanity")
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


def load_phrases(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip().lower() for line in lines if line.strip() and not line.startswith("#")]


def shipped_phrases() -> dict[str, str]:
    """Every shipped phrase and its category."""
    return {phrase: category for category in CATEGORIES for phrase in load_phrases(DATA / f"{category}.txt")}


class PhraseMatcher:
    def __init__(self, phrases: Mapping[str, str] | Iterable[str], *, allow: Iterable[str] = ()) -> None:
        """``phrases``: phrase -> category (or just phrases, category "extra")."""
        allowed = {a.strip().lower() for a in allow}
        by_phrase = dict(phrases) if isinstance(phrases, Mapping) else dict.fromkeys(phrases, "extra")
        self.categories = {
            p.strip().lower(): c
            for p, c in by_phrase.items()
            if p.strip() and p.strip().lower() not in allowed
        }
        self.phrases = sorted(self.categories, key=len, reverse=True)
        # Inflections only after a phrase not already ending in "s": "asses" + "s" would be "assess".
        alternatives = [
            "".join(_letter(c) for c in phrase) + ("" if phrase.endswith("s") else _SUFFIXES)
            for phrase in self.phrases
        ]
        # One group per phrase: the group that matched names the phrase, so no pattern per phrase
        # is compiled (453 of them took 0.3 s of every start).
        body = "|".join(f"({alternative})" for alternative in alternatives)
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])") if body else None

    @classmethod
    def default(cls, *, extra: Iterable[str] = (), allow: Iterable[str] = ()) -> PhraseMatcher:
        return cls({**shipped_phrases(), **dict.fromkeys(extra, "extra")}, allow=allow)

    @staticmethod
    def normalise(text: str) -> str:
        return normalise(text)

    def _search(self, text: str) -> re.Match[str] | None:
        return None if self._pattern is None else self._pattern.search(normalise(text))

    def find(self, text: str) -> str | None:
        """The first offensive phrase in ``text`` (as the normalised text has it), or None."""
        match = self._search(text)
        return match.group(0) if match else None

    def category(self, text: str) -> str | None:
        """The category of the first offensive phrase in ``text``, or None."""
        match = self._search(text)
        if match is None or match.lastindex is None:
            return None
        return self.categories[self.phrases[match.lastindex - 1]]
