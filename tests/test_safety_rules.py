"""Each normalisation rule, each category of the lists and patterns, the hard negatives, and the
care for disclosures through `python -m bot chat`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety.normalise import normalise
from safety.patterns import abuse, disclosure
from safety.wordlist import PhraseMatcher
from tests.cli import run, tiny, write_config


@pytest.fixture(scope="module")
def matcher() -> PhraseMatcher:
    return PhraseMatcher.default()


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("ＦＵＣＫ", "fuck"),  # full-width letters (NFKC)
        ("fu\u200bck", "fuck"),  # a zero-width space
        ("fu\u00adck", "fuck"),  # a soft hyphen
        ("fuсk уоu", "fuck you"),  # Cyrillic с, у, о
        ("fυck", "fuck"),  # Greek upsilon
        ("fück", "fuck"),  # an accent
        ("f u c k you", "fuck you"),  # spaced-out letters
        ("f.u.c.k", "fuck"),
        ("sh1t and @ss", "shit and ass"),  # leetspeak inside words
        ("you bitch!", "you bitch!"),  # a "!" ending a word is punctuation
        ("I paid 455 dollars", "i paid 455 dollars"),  # a number standing alone stays a number
        ("a b", "a b"),  # two letters are not a spelled-out word
    ],
)
def test_each_normalisation_rule(written: str, read: str) -> None:
    assert normalise(written) == read


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("you stupid n1gger", "slurs"),
        ("what a faggot", "slurs"),
        ("send me a blowjob video", "sexual"),
        ("nice tits", "sexual"),
        ("fuck off", "profanity"),
        ("you bitch!", "profanity"),
        ("sh!t happens", "profanity"),
        ("fuсk уоu", "profanity"),
    ],
)
def test_each_list_category(matcher: PhraseMatcher, text: str, category: str) -> None:
    assert matcher.category(text) == category


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I'm going to stab you next time I see you", "threat"),
        ("i will find you and you will pay", "threat"),
        ("you're dead", "threat"),
        ("I know where you live", "threat"),
        ("kys", "self_harm_encouragement"),
        ("go drink bleach", "self_harm_encouragement"),
        ("you should just kill yourself", "self_harm_encouragement"),
        ("nobody would miss you", "self_harm_encouragement"),
        ("you are worthless and everyone hates you", "harassment"),
        ("you're a waste of space", "harassment"),
        ("immigrants are vermin", "identity_attack"),
        ("gays should be locked up", "identity_attack"),
        ("send me nudes", "sexual"),
    ],
)
def test_each_pattern_category(text: str, category: str) -> None:
    assert abuse(text) == category


@pytest.mark.parametrize(
    "text",
    [
        "I'm gay and I just came out to my parents",
        "we are lesbians",
        "homo sapiens",
        "I'm a trans woman and a proud Muslim",
        "black lives matter",
        "my son has a rash on his penis",
        "I had a stroke last year",
        "my breasts are sore after the vaccine",
        "chicken breasts with rice",
        "pork loin for dinner",
        "our cocker spaniel",
        "Moby Dick is a long book",
        "Mr Wang and Sir Tony Hoare",
        "Yuri Gagarin flew first",
        "I killed it at the gym",
        "kill the process and restart it",
        "this song is sick",
        "I paid 455 dollars",
        "Scunthorpe United won",
        "damn, that's cool",
        "I'm going to kill this workout",
        "you are amazing",
        "my cat is a little pig when she eats",
    ],
)
def test_hard_negatives_pass_every_instant_stage(matcher: PhraseMatcher, text: str) -> None:
    assert matcher.find(text) is None
    assert abuse(text) is None
    assert disclosure(text) is None


@pytest.mark.parametrize(
    ("text", "need"),
    [
        ("I want to kill myself", "self_harm"),
        ("i don't want to live anymore", "self_harm"),
        ("I've been cutting myself again", "self_harm"),
        ("someone told me to kill myself online, what should I do?", "harassed"),
        ("I'm being bullied at school", "harassed"),
    ],
)
def test_disclosures_are_recognised(text: str, need: str) -> None:
    assert disclosure(text) == need


def test_a_person_in_need_gets_care_through_the_console(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = tiny(tmp_path, blenderbot_dir, safety={"care": {"self_harm_reply": "CARE LINE 555"}})
    config = str(write_config(tmp_path, raw))
    lines = [
        "I want to kill myself",
        "someone told me to kill myself online, what should I do?",
        "you are worthless",
        "hello there",
    ]
    result = run("chat", "--config", config, cwd=tmp_path, stdin="".join(line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr
    replies = result.stdout.splitlines()
    assert replies[0] == "CARE LINE 555"
    assert replies[1].startswith("I'm sorry that happened to you.")
    assert "keep things friendly" in replies[2]  # abuse without a swear word is still blocked
    assert replies[3] not in ("CARE LINE 555",) and "keep things friendly" not in replies[3]
    export = run(
        "admin", "export", "--platform", "console", "--user", "local", "--config", config, cwd=tmp_path
    )
    turns = json.loads(export.stdout)["conversations"][0]["turns"]
    assert [t["blocked"] for t in turns] == [True, True, True, True, True, False, False]  # out of contexts


def test_the_offline_classifier_scores_in_batches() -> None:
    """alt-profanity-check (safety.classifier.model), which ships its model: nothing to download."""
    import asyncio

    from safety.checker import SafetyChecker
    from safety.classifier import AltProfanityCheck, ToxicityClassifier

    async def scores() -> list[bool]:
        checker = SafetyChecker(None, ToxicityClassifier(AltProfanityCheck), phrase_patterns=False)
        await checker.start()
        verdicts = await checker.classify(["you suck", "go to hell", "have a nice day", "I love my dog"])
        await checker.stop()
        assert checker.classifier is not None and list(checker.classifier.batches) == [4]
        return [v.safe for v in verdicts]

    assert asyncio.run(scores()) == [False, False, True, True]


def test_the_offline_classifier_through_the_console(tmp_path: Path, blenderbot_dir: Path) -> None:
    raw = tiny(
        tmp_path, blenderbot_dir, safety={"classifier": {"enabled": True, "model": "alt-profanity-check"}}
    )
    result = run(
        "chat", "--config", str(write_config(tmp_path, raw)), cwd=tmp_path, stdin="you suck\nhello there\n"
    )
    assert result.returncode == 0, result.stderr  # with no network: nothing is downloaded
    blocked, answered = result.stdout.splitlines()
    assert "keep things friendly" in blocked and "keep things friendly" not in answered
