"""What of a person's remembered material is relevant to their new message.

Two kinds of material: facts (see :mod:`memory.facts`) and older turns of theirs that have left
the recent window (found by the database's full-text search). A fact is relevant when the new
message asks about its slot ("what's my name?" for the name, "how's my dog?" for a pet) or
shares a content word with it; an older turn when it shares at least two of the message's content
words (or its only one). Words are compared by their Snowball stems, without stop words.

A slot's cue counts only when the message is about the person ("my", "I", "me") or about no one
("hi!"): "what's your name?" asks about the bot, and the person's name would be the wrong answer.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import snowballstemmer

_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours yourself yourselves im ive id ill dont doesnt didnt
    cant wont isnt arent wasnt s t d ll m re ve oh ok okay yeah yes hey hi hello lol haha well
    really like also get got one thing things know think remember tell told said say much many
    something anything still even ever always never back go going want""".split()  # noqa: SIM905 (a word list)
)
_FIRST_PERSON = re.compile(r"\b(?:i|my|me|mine|myself|i'm|im|i've|i'd|i'll)\b")
_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself|you're|u|ur)\b")

_PETS = (
    r"pets?|animals?|dogs?|puppy|pupp(?:y|ies)|cats?|kittens?|kitty|hamsters?|rabbits?|bunny|parrots?|"
    r"birds?|fish|goldfish|turtles?|snakes?|lizards?|horses?|pony|guinea pigs?|ferrets?|vet|walks?|furry"
)
_FAMILY = (
    r"family|wife|husband|spouse|married|kids?|children|child|sons?|daughters?|brothers?|sisters?|"
    r"siblings?|boyfriend|girlfriend|partner|fianc[eé]e?|twins?|grand(?:son|daughter|children|kids)|baby"
)
_JOB = (
    r"jobs?|work|working|works|living|profession|career|occupation|boss|office|colleagues?|"
    r"co-?workers?|shifts?|what do i do"
)
_CUES = {
    "name": r"my (?:full |first |last |real )?name|who am i|who i am|call me|remember me|hi|hello|hey|"
    r"good (?:morning|afternoon|evening)",
    "age": r"old|age|birthdays?|born|years",
    "job": _JOB,
    "workplace": _JOB + r"|company|employer",
    "study": r"study|studying|studies|major|school|college|university|uni|class(?:es)?|degree|student|exams?",
    "city": r"live|city|town|where|home|neighbou?rhood|country|weather|move|moved|area",
    "hometown": r"from|grew up|born|hometown|where|originally|country",
    "pet": _PETS,
    "family": _FAMILY,
    "pref": r"like|likes|love|loves|favou?rites?|enjoy|hate|dislike|fan|into|prefer|taste",
    "hobby": r"hobby|hobbies|free time|spare time|weekends?|fun|play|playing|bored|instruments?|sports?",
}
_CUE_PATTERNS = {slot: re.compile(rf"\b(?:{cue})\b") for slot, cue in _CUES.items()}
# The words the facts' own templates use ("named", "I live in"): what a message asks about them is
# for the slots' cues to say, else every named pet would answer "what's my name?".
_TEMPLATE_STEMS = frozenset(
    {"name", "call", "live", "work", "love", "favorit", "hobbi", "play", "year", "old"}
)
_FACT_BONUS = 0.5  # a fact says in a few tokens what a whole turn says in many
_SEARCH_WORDS = 12
_CANDIDATES = 8  # the most relevant pieces offered to the context builder (32 tokens hold about 4)


@dataclass(frozen=True)
class StoredFact:
    id: int
    slot: str
    text: str
    source: str | None  # the text of the turn it was found in (None once that turn is deleted)
    at: int  # the id of that turn: remembered material enters the input oldest first


@dataclass(frozen=True)
class FoundTurn:
    id: int
    text: str


@dataclass(frozen=True)
class Remembered:
    """A piece of remembered material for one model input, as plain text the person wrote or stated."""

    text: str
    source: str | None  # the turn it came from: skipped when the recent turns show that turn
    at: int
    score: float
    fact: bool


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower().replace("'", "")) if w not in _STOP_WORDS]


_local = threading.local()


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:  # a stemmer keeps state while it works: one per thread
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


@functools.lru_cache(maxsize=16384)
def terms(text: str) -> frozenset[str]:
    """The stems of the content words of ``text``."""
    return frozenset(_stem(w) for w in _words(text) if len(w) > 1)


def search_words(text: str) -> list[str]:
    """The content words of ``text`` to look up in the full-text index (letters and digits only)."""
    seen: dict[str, None] = {}
    for word in _words(text):
        if len(word) > 1:
            seen.setdefault(word, None)
    return list(seen)[:_SEARCH_WORDS]


def cued_slots(probe: str) -> set[str]:
    """The slots ``probe`` asks about, when it is about the person."""
    lowered = probe.lower().replace("’", "'")
    if _SECOND_PERSON.search(lowered) and not _FIRST_PERSON.search(lowered):
        return set()
    return {slot for slot, pattern in _CUE_PATTERNS.items() if pattern.search(lowered)}


_MANY_VALUED = frozenset({"pet", "family", "pref", "hobby"})


def rank(probe: str, facts: Sequence[StoredFact], turns: Sequence[FoundTurn]) -> list[Remembered]:
    """The relevant material, most relevant first (newer first among equals), at most eight pieces.

    Of a many-valued kind (pets, family, likes, hobbies), when the message names what it is about
    ("what food do I like?"), only the facts that share its words come in, not every like. An
    older turn counts by its words other than the kinds' cues ("name", "live", "work": facts
    answer those), must not be a question, and must not be a fact's own source.
    """
    wanted = terms(probe)
    slots = cued_slots(probe)
    scored: list[tuple[StoredFact, int, bool]] = []
    for fact in facts:
        shared = len((wanted & terms(fact.text)) - _TEMPLATE_STEMS)
        cue = fact.slot in slots
        if shared or cue:
            scored.append((fact, shared, cue))
    named = {fact.slot for fact, shared, _ in scored if shared and fact.slot in _MANY_VALUED}
    out = [
        Remembered(fact.text, fact.source, fact.at, 2.0 * cue + shared + _FACT_BONUS, True)
        for fact, shared, cue in scored
        if shared or fact.slot not in named
    ]
    sources = {fact.at for fact in facts}
    content = wanted - _TEMPLATE_STEMS
    needed = min(2, len(content))
    for turn in turns:
        if turn.id in sources or turn.text.rstrip().endswith("?"):
            continue
        shared = len(content & terms(turn.text))
        if needed and shared >= needed:
            out.append(Remembered(turn.text, turn.text, turn.id, float(shared), False))
    out.sort(key=lambda r: (-r.score, -r.at))
    return out[:_CANDIDATES]
