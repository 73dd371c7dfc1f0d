"""The rules that find facts: what a first-person statement looks like, slot by slot.

Each rule is a pattern with a named value group and a maker that turns a match into a
:class:`Fact` (or None when the value says nothing: "I love it"). :mod:`memory.facts` applies them
to the sentences that state something.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

SINGLE_VALUED = frozenset({"name", "age", "job", "workplace", "study", "city", "hometown"})


@dataclass(frozen=True)
class Fact:
    slot: str  # name, age, job, workplace, study, city, hometown, pet, family, pref, hobby
    key: str  # what a newer fact replaces: the slot, or slot:subject for the many-valued ones
    text: str  # a first-person sentence: "my name is Ada"


_PETS = (
    "dog|dogs|puppy|puppies|cat|cats|kitten|kittens|hamster|hamsters|rabbit|rabbits|bunny|bunnies|"
    "parrot|parrots|bird|birds|fish|goldfish|turtle|turtles|tortoise|snake|snakes|lizard|lizards|"
    "horse|horses|pony|guinea pig|guinea pigs|ferret|ferrets|gerbil|gerbils|mouse|mice|rat|rats|"
    "pig|pigs|goat|goats|chickens|hens|iguana|budgie|budgies|cockatiel|chihuahua|poodle|labrador|"
    "retriever|golden retriever|german shepherd|pug|beagle|husky|corgi|terrier|bulldog|dachshund"
)
_FAMILY = (
    "wife|husband|son|sons|daughter|daughters|kid|kids|child|children|baby|babies|brother|brothers|"
    "sister|sisters|sibling|siblings|boyfriend|girlfriend|partner|fiance|fiancee|fiancé|fiancée|"
    "twin|twins|grandson|granddaughter|grandchildren|grandkids|stepson|stepdaughter"
)
_JOBS = (
    "nurse|teacher|doctor|physician|surgeon|dentist|engineer|programmer|developer|coder|designer|"
    "student|lawyer|attorney|chef|cook|baker|waiter|waitress|bartender|barista|cashier|accountant|"
    "mechanic|electrician|plumber|carpenter|farmer|pilot|driver|firefighter|police officer|cop|"
    "soldier|scientist|researcher|professor|lecturer|librarian|writer|author|journalist|editor|"
    "artist|painter|musician|singer|actor|actress|photographer|architect|pharmacist|therapist|"
    "psychologist|vet|veterinarian|paramedic|manager|consultant|analyst|salesman|saleswoman|"
    "realtor|secretary|receptionist|clerk|janitor|cleaner|hairdresser|barber|tailor|translator|"
    "tutor|coach|trainer|miner|welder|fisherman|banker|economist|entrepreneur|freelancer|"
    "retiree|housewife|stay at home mom|stay at home dad|homemaker|nanny|caregiver|technician"
)
_NUMBER = r"(?:an?|one|two|three|four|five|six|seven|eight|nine|ten|\d{1,2})"
_NAME = r"[A-Za-z][A-Za-z'\-]*(?: (?-i:[A-Z])[A-Za-z'\-]*)?"  # a second word only when capitalised
_THING = r"[^,.;:!?()\"]+"  # up to the end of the clause; cut further by _clip
_V_NAME = f"(?P<v>{_NAME})"
_V_THING = f"(?P<v>{_THING})"

_CLIP = re.compile(
    r"\s+(?:and|but|because|so|since|though|although|which|who|that|where|when|while|with|or|"
    r"too|as well|also|lol|haha|lmao|tbh|though|a lot|very much|so much|right now|now)\b.*$",
    re.IGNORECASE,
)
# A thing that starts with one of these says nothing on its own ("I love it", "I like that").
_EMPTY_THINGS = frozenset(
    """it that this you them him her these those what how one doing being something anything everything
    nothing when your yours me myself us here there so just really the a an""".split()  # noqa: SIM905 (a word list)
)
_ARTICLES = frozenset({"the", "a", "an", "my", "to"})


def _clip(value: str, words: int) -> str:
    value = _CLIP.sub("", value.strip())
    value = re.sub(r"^(?:really|actually|just|also|currently|now)\s+", "", value, flags=re.IGNORECASE)
    return " ".join(value.split()[:words]).strip(" '-")


def _thing(value: str, limit: int = 5) -> str | None:
    value = _clip(value, limit)
    words = value.lower().split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    if not words or words[0] in _EMPTY_THINGS:
        return None
    return value


def _job(value: str) -> str | None:
    return _thing(re.split(r"\s+(?:at|for|in)\s+", value, maxsplit=1)[0], 5)


def _subject(value: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", value.lower()).strip()


def _name(value: str) -> str | None:
    value = _clip(value, 2)
    words = value.split()
    if not words or words[0].lower() in _EMPTY_THINGS | {"not", "called", "named", "is", "was"}:
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    make: Callable[[re.Match[str]], Fact | None]


def _rule(pattern: str, make: Callable[[re.Match[str]], Fact | None]) -> _Rule:
    return _Rule(re.compile(pattern, re.IGNORECASE), make)


def _single(
    slot: str, template: str, clean: Callable[[str], str | None]
) -> Callable[[re.Match[str]], Fact | None]:
    def make(match: re.Match[str]) -> Fact | None:
        value = clean(match.group("v"))
        return None if value is None else Fact(slot, slot, template.format(value))

    return make


def _age(match: re.Match[str]) -> Fact | None:
    age = int(match.group("v"))
    return Fact("age", "age", f"I am {age} years old") if 5 <= age <= 120 else None


def _pet(match: re.Match[str]) -> Fact | None:
    kind = match.group("kind").lower()
    count = (match.groupdict().get("n") or "a").lower()
    name = _name(match.group("name")) if match.groupdict().get("name") else None
    if match.groupdict().get("name") and name is None:
        return None
    phrase = f"{count} {kind}"
    text = f"I have {phrase} named {name}" if name else f"I have {phrase}"
    return Fact("pet", f"pet:{kind.rstrip('s')}", text)


def _my_pet(match: re.Match[str]) -> Fact | None:
    kind, name = match.group("kind").lower(), _name(match.group("name"))
    return None if name is None else Fact("pet", f"pet:{kind.rstrip('s')}", f"my {kind}'s name is {name}")


def _family(match: re.Match[str]) -> Fact | None:
    who, count = match.group("who").lower(), (match.groupdict().get("n") or "a").lower()
    words = match.groupdict().get("adj") or ""
    return Fact("family", f"family:{who.rstrip('s')}", f"I have {count} {words}{who}".replace("  ", " "))


def _my_family(match: re.Match[str]) -> Fact | None:
    who, name = match.group("who").lower(), _name(match.group("name"))
    return None if name is None else Fact("family", f"family:{who}", f"my {who}'s name is {name}")


def _pref(verb: str) -> Callable[[re.Match[str]], Fact | None]:
    def make(match: re.Match[str]) -> Fact | None:
        value = _thing(match.group("v"))
        if value is None:
            return None
        return Fact("pref", f"pref:{_subject(value)}", f"I {verb} {value}")

    return make


def _favourite(match: re.Match[str]) -> Fact | None:
    what, value = _thing(match.group("what"), 2), _thing(match.group("v"))
    if what is None or value is None:
        return None
    return Fact("pref", f"favourite:{_subject(what)}", f"my favorite {what} is {value}")


def _hobby(template: str) -> Callable[[re.Match[str]], Fact | None]:
    def make(match: re.Match[str]) -> Fact | None:
        value = _thing(match.group("v"), 4)
        return None if value is None else Fact("hobby", f"hobby:{_subject(value)}", template.format(value))

    return make


_I_AM = r"\bi am\s+"
RULES = (
    _rule(r"\bmy name(?:'s| is)\s+" + _V_NAME, _single("name", "my name is {}", _name)),
    _rule(_I_AM + r"called\s+" + _V_NAME, _single("name", "my name is {}", _name)),
    _rule(
        r"\b(?:you can |people |everyone |friends )?call me\s+" + _V_NAME,
        _single("name", "my name is {}", _name),
    ),
    _rule(
        _I_AM + r"(?P<v>\d{1,3})(?:\s*(?:years?|yrs?)(?:\s*old)?|\s*yo)?"
        r"(?=\s*(?:$|[,.!;]|(?:and|lol|haha|lmao|now|already|btw|actually)\b))",
        _age,
    ),
    _rule(r"\bi (?:just |recently )?turned\s+(?P<v>\d{1,3})\b", _age),
    _rule(r"\bmy age is\s+(?P<v>\d{1,3})\b", _age),
    _rule(r"\bi work as\s+" + _V_THING, _single("job", "I work as {}", _job)),
    _rule(
        r"\bmy job is\s+(?:being\s+)?" + _V_THING,
        _single("job", "my job is {}", _job),
    ),
    _rule(
        _I_AM + r"(?:an?\s+)(?P<v>(?:[a-z]+\s+){0,2}(?:" + _JOBS + r"))\b",
        _single("job", "I am a {}", lambda v: _thing(v, 4)),
    ),
    _rule(
        r"\bi work (?:at|for|in)\s+" + _V_THING, _single("workplace", "I work at {}", lambda v: _thing(v, 4))
    ),
    _rule(
        r"\bi (?:study|am studying|major in|am majoring in)\s+" + _V_THING,
        _single("study", "I study {}", lambda v: _thing(v, 4)),
    ),
    _rule(
        r"\bi (?:live|am living)\s+in\s+" + _V_THING, _single("city", "I live in {}", lambda v: _thing(v, 5))
    ),
    _rule(
        r"\bi (?:have\s+)?(?:just\s+|recently\s+)?moved to\s+" + _V_THING,
        _single("city", "I live in {}", lambda v: _thing(v, 5)),
    ),
    _rule(
        _I_AM + r"(?:originally\s+)?from\s+" + _V_THING,
        _single("hometown", "I am from {}", lambda v: _thing(v, 5)),
    ),
    _rule(r"\bi grew up in\s+" + _V_THING, _single("hometown", "I grew up in {}", lambda v: _thing(v, 5))),
    _rule(
        r"\bi have\s+(?P<n>"
        + _NUMBER
        + r")\s+(?:[a-z]+\s+)?(?P<kind>"
        + _PETS
        + r")\s+(?:named|called)\s+(?P<name>"
        + _NAME
        + ")",
        _pet,
    ),
    _rule(
        r"\bi have\s+(?P<n>"
        + _NUMBER
        + r")\s+(?:[a-z]+\s+)?(?P<kind>"
        + _PETS
        + r")\b(?!\s+(?:named|called))",
        _pet,
    ),
    _rule(
        r"\bmy (?P<kind>" + _PETS + r")(?:'s name is| is (?:named|called)| is)\s+(?P<name>" + _NAME + ")",
        _my_pet,
    ),
    _rule(
        r"\bi have\s+(?P<n>"
        + _NUMBER
        + r")\s+(?P<adj>(?:little |older |younger |big |baby |twin |step |grown )?)(?P<who>"
        + _FAMILY
        + r")\b",
        _family,
    ),
    _rule(
        r"\bmy (?P<who>" + _FAMILY + r")(?:'s name is| is (?:named|called))\s+(?P<name>" + _NAME + ")",
        _my_family,
    ),
    _rule(
        _I_AM + r"(?P<v>married|divorced|engaged|single|a widow|a widower|pregnant)\b",
        lambda m: Fact("family", "family:status", f"I am {m.group('v').lower()}"),
    ),
    _rule(r"\bi (?:really |absolutely |truly |just )?(?:love|adore)\s+" + _V_THING, _pref("love")),
    _rule(r"\bi (?:really |just )?(?:like|enjoy)\s+" + _V_THING, _pref("like")),
    _rule(_I_AM + r"(?:a |an )?(?:big |huge )?fan of\s+" + _V_THING, _pref("am a fan of")),
    _rule(_I_AM + r"(?:really )?into\s+" + _V_THING, _pref("am into")),
    _rule(
        r"\bi (?:really )?(?:hate|dislike|detest|can't stand|cannot stand|don't like|do not like)\s+"
        + _V_THING,
        _pref("don't like"),
    ),
    _rule(r"\bmy favou?rite (?P<what>[a-z]+(?: [a-z]+)?) is\s+" + _V_THING, _favourite),
    _rule(r"\bmy hobb(?:y is|ies are)\s+" + _V_THING, _hobby("my hobby is {}")),
    _rule(r"\bin my (?:free|spare) time,? i\s+" + _V_THING, _hobby("in my free time I {}")),
    _rule(r"\bi play\s+(?:the\s+)?" + _V_THING, _hobby("I play {}")),
)
