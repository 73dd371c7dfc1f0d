"""Facts a person states about themselves, found by rules in their own messages.

Only plain first-person statements count: "my name is Ada", "I have a dog named Rex", "I work as
a nurse", "I live in Lyon", "I love jazz", "I have two kids", "I play chess". A sentence that is
a question, a hypothetical ("if I had a dog ..."), negated ("I don't have a dog"), reported
speech ("he said my name is ...") or inside quotation marks states nothing. Each fact is kept as
a short first-person sentence, the form in which the model reads it back.

A fact has a ``key``: a newer fact with the same key replaces the older one. The single-valued
slots (name, age, job, workplace, study, city, hometown) are their own key; the others are keyed by
what they are about (``pet:dog``, ``family:sister``, ``pref:jazz``: loving jazz replaces hating it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from memory.fact_rules import RULES, SINGLE_VALUED, Fact

__all__ = ["SINGLE_VALUED", "Fact", "extract"]

# The start of the clause a match is in must not hold one of these.
_NEGATION = re.compile(r"\b(?:not|never|no longer|no|don't|dont|do not|didn't|can't|cannot|won't|wouldn't)\b")
_HYPOTHETICAL = re.compile(
    r"\b(?:if|unless|suppose|supposing|imagine|pretend|wish|would|could|might|maybe|perhaps|someday|"
    r"one day|hope|hoping|want to|wanna|going to|gonna|plan to|planning to|dream|dreaming|i'd|"
    r"what if|let's say|lets say)\b"
)
_REPORTED = re.compile(
    r"\b(?:said|says|say|told|tells|tell|asked|asks|wrote|writes|quote|quoted|thinks|thought|"
    r"believes|claims|claimed|joked|joke|kidding|lied|he|she|they)\b"
)
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?:^|(?<=\s))'[^']*'(?=\s|$|[.,!?])|«[^»]*»")
_QUESTION_START = re.compile(
    r"^\s*(?:do|does|did|are|is|am|was|were|what|who|whom|whose|where|when|why|how|which|can|could|"
    r"would|should|will|shall|have|has|had|may|might|isn't|aren't|don't|didn't|doesn't)\b"
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+|\s+(?:but|and then|although|though|because)\s+")
_CONTRACTIONS = (
    (re.compile(r"\bi'm\b|\bim\b", re.IGNORECASE), "i am"),
    (re.compile(r"\bi've\b|\bive\b", re.IGNORECASE), "i have"),
    (re.compile(r"\bi have got\b|\bi got\b", re.IGNORECASE), "i have"),
)


def _normalise(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'")
    text = _QUOTED.sub(" ", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _sentences(text: str) -> Iterator[str]:
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if sentence:
            yield sentence


_TAG = re.compile(
    r",\s*(?:(?:and|but|so|what|how|do|don't|are|have|did)\b[^,]*|you|you too|right|really|yours|no|eh|huh)"
    r"\?+\s*$",
    re.IGNORECASE,
)


def _statement(sentence: str) -> str | None:
    """The sentence as a statement, without a question tag ("..., what about you?"); None for a
    question, which states nothing about the speaker."""
    sentence = _TAG.sub("", sentence.strip())
    if sentence.endswith("?") or _QUESTION_START.match(sentence.lower()):
        return None
    return sentence


def extract(text: str) -> list[Fact]:
    """The facts ``text`` (one message of a person) states about its speaker, in order, one per key."""
    found: dict[str, Fact] = {}
    for part in _sentences(_normalise(text)):
        sentence = _statement(part)
        if sentence is None:
            continue
        for rule in RULES:
            for match in rule.pattern.finditer(sentence):
                before = sentence[: match.start()].lower()
                clause = re.split(r"[,;:]", before)[-1]
                if _HYPOTHETICAL.search(before) or _REPORTED.search(before) or _NEGATION.search(clause):
                    continue
                if _NEGATION.search(match.group(0).lower()) and not _is_negative(match.group(0)):
                    continue
                fact = rule.make(match)
                if fact is not None and fact.key not in found:
                    found[fact.key] = fact
    return list(found.values())


def _is_negative(matched: str) -> bool:
    return bool(
        re.match(r"i (?:really )?(?:don't|do not|can't|cannot) (?:like|stand)", matched, re.IGNORECASE)
    )
