"""Long-term memory: extraction rules, the facts table and full-text search on SQLite and PostgreSQL,
relevance, and the memory block's exact token budget on the real 400M-distill tokenizer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text, update

from bot.context import build_context
from memory import ConversationKey, MemoryStore
from memory.facts import extract
from memory.recall import Remembered, cued_slots, rank
from memory.schema import FactRow
from model.config import BlenderbotConfig
from model.tokenizer import BlenderbotTokenizer
from tests.checkpoints import REAL_400M

DM = ConversationKey("telegram", "dm-1", "alice")
GROUP = ConversationKey("telegram", "group-1", "alice")

STATED = [
    ("My name is Ada.", ["my name is Ada"]),
    ("hi, my name's ada lovelace", ["my name is Ada"]),
    ("Hello! My name is Ada Lovelace and I live in London.", ["my name is Ada Lovelace", "I live in London"]),
    ("you can call me Al", ["my name is Al"]),
    ("I'm 34 years old", ["I am 34 years old"]),
    ("im 25", ["I am 25 years old"]),
    ("I just turned 30 yesterday!", ["I am 30 years old"]),
    ("I work as a software engineer at a bank", ["I work as a software engineer"]),
    ("I'm a nurse, what about you?", ["I am a nurse"]),
    ("i am a high school teacher", ["I am a high school teacher"]),
    ("I work at the hospital downtown", ["I work at the hospital downtown"]),
    ("I'm studying biology", ["I study biology"]),
    ("I just moved to Berlin", ["I live in Berlin"]),
    ("I'm from Brazil", ["I am from Brazil"]),
    ("I have a dog named Rex", ["I have a dog named Rex"]),
    ("i've got two cats", ["I have two cats"]),
    ("My dog's name is Biscuit", ["my dog's name is Biscuit"]),
    ("I have two kids and a husband", ["I have two kids"]),
    ("My wife's name is Ana.", ["my wife's name is Ana"]),
    ("i am married", ["I am married"]),
    ("I love jazz music so much", ["I love jazz music"]),
    ("I like to read books", ["I like to read books"]),
    ("I hate onions", ["I don't like onions"]),
    ("I don't like spiders", ["I don't like spiders"]),
    ("I'm a big fan of the Beatles", ["I am a fan of the Beatles"]),
    ("My favorite food is sushi", ["my favorite food is sushi"]),
    ("my hobby is knitting", ["my hobby is knitting"]),
    ("I play the guitar", ["I play guitar"]),
    ("I love pizza, do you?", ["I love pizza"]),
    ("What about you? I have a cat.", ["I have a cat"]),
]
STATES_NOTHING = [
    "What is my name?",
    "Is my name Ada?",
    "Do you like pizza?",
    "If I had a dog named Rex I would walk him every day",
    "I wish I lived in Paris",
    "maybe I'll move to Paris one day",
    "I would love a dog",
    "He said my name is Bob",
    "My friend told me I have a dog",
    '"my name is Bob" is a line from a movie',
    "I don't have a dog",
    "I have never had a cat",
    "my name is not important",
    "I'm not from here",
    "I love you",
    "I like it",
    "I am 5 minutes away",
    "My friend's name is Bob",
    "My brother lives in Paris",
    "you live in a computer",
]


@pytest.mark.parametrize(("message", "expected"), STATED)
def test_a_statement_about_oneself_is_a_fact(message: str, expected: list[str]) -> None:
    assert [fact.text for fact in extract(message)] == expected


@pytest.mark.parametrize("message", STATES_NOTHING)
def test_questions_hypotheticals_quotes_and_negations_are_not_facts(message: str) -> None:
    assert extract(message) == []


def test_loving_and_hating_the_same_thing_share_a_key() -> None:
    (love,) = extract("I love onions")
    (hate,) = extract("I hate onions")
    assert love.key == hate.key == "pref:onions"


def test_a_message_about_the_bot_cues_no_slot() -> None:
    assert cued_slots("what's your name?") == set()
    assert cued_slots("do you remember my name?") == {"name"}
    assert "pet" in cued_slots("how is my dog doing?")


async def _say(store: MemoryStore, key: ConversationKey, message: str, role: str = "user") -> int:
    turn = await store.add_turn(key, role, message)
    if role == "user":
        await store.longterm.learn(key, turn, message)
    return turn


async def test_single_valued_slots_are_replaced_and_others_accumulate(store: MemoryStore) -> None:
    await _say(store, DM, "My name is Ada.")
    await _say(store, DM, "I have a dog. I love jazz.")
    await _say(store, DM, "Actually my name is Beth. My dog's name is Rex. I love tea.")
    assert await store.longterm.facts(DM) == [
        "my name is Beth",
        "my dog's name is Rex",
        "I love jazz",
        "I love tea",
    ]


async def test_what_is_said_in_a_dm_never_enters_a_group(store: MemoryStore) -> None:
    await _say(store, DM, "My name is Ada and I have a dog named Rex.")
    assert await store.longterm.facts(GROUP) == []
    await store.add_turn(GROUP, "user", "hello group")
    assert await store.longterm.recall(GROUP, "what's my name? what's my dog called?", window=0) == []
    assert [r.text for r in await store.longterm.recall(DM, "what's my name?", window=64)] == [
        "my name is Ada"
    ]


async def test_older_turns_are_searched_beyond_the_window_only(store: MemoryStore) -> None:
    await _say(store, DM, "We spent a week in Kyoto visiting temples last spring")
    for i in range(10):
        await _say(store, DM, f"filler message number {i}")
        await _say(store, DM, f"bot answer {i}", role="bot")
    probe = "I miss the temples of Kyoto"
    assert [r.text for r in await store.longterm.recall(DM, probe, window=64)] == []  # still in the window
    found = await store.longterm.recall(DM, probe, window=4)
    assert [(r.text, r.fact) for r in found] == [
        ("We spent a week in Kyoto visiting temples last spring", False)
    ]
    assert await store.longterm.recall(DM, probe, window=4, search=False) == []
    await store.reset(DM)
    assert await store.longterm.recall(DM, probe, window=0) == []  # /reset: out of every context


async def test_blocked_turns_are_never_searched_nor_learned(store: MemoryStore) -> None:
    await store.add_turn(DM, "user", "I live in Kyoto near the temples", blocked=True)
    await _say(store, DM, "something else entirely")
    assert await store.longterm.recall(DM, "Kyoto temples", window=0) == []


async def test_reset_forget_export_and_retention_cover_facts(store: MemoryStore) -> None:
    await _say(store, DM, "My name is Ada.")
    await _say(store, GROUP, "I have a cat named Tom.")
    exported = await store.export("telegram", "alice")
    assert exported["memory"] == "on"
    assert [[f["fact"] for f in c["remembered"]] for c in exported["conversations"]] == [
        ["my name is Ada"],
        ["I have a cat named Tom"],
    ]
    await store.reset(DM)  # the turns a fact came from leave the context, and so does the fact
    assert await store.longterm.facts(DM) == []
    assert await store.longterm.facts(GROUP) == ["I have a cat named Tom"]
    async with store.engine.begin() as conn:
        await conn.execute(update(FactRow).values(updated_at=datetime.now(UTC) - timedelta(days=40)))
    await store.purge_older_than(30)
    assert await store.longterm.facts(GROUP) == []
    await _say(store, GROUP, "I have a cat named Tom.")
    await store.longterm.set_remember("telegram", "alice", False)
    assert await store.forget("telegram", "alice") == 3
    assert await store.longterm.facts(GROUP) == []
    assert not await store.longterm.remembers("telegram", "alice")  # forgetting never turns it back on
    async with store.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM facts"))).scalar() == 0


async def test_forget_removes_turns_from_the_search_index(store: MemoryStore) -> None:
    await _say(store, DM, "my secret word is pineapple")
    await store.forget("telegram", "alice")
    await _say(store, DM, "hello again")
    assert await store.longterm.recall(DM, "pineapple secret", window=0) == []
    if store.backend == "sqlite":
        async with store.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT count(*) FROM turns_fts WHERE turns_fts MATCH 'pineapple'")
            )
            assert found.scalar() == 0


async def test_memory_off_learns_and_recalls_nothing(store: MemoryStore) -> None:
    await _say(store, DM, "My name is Ada.")
    await store.longterm.set_remember("telegram", "alice", False)
    await _say(store, DM, "I have a dog named Rex.")
    assert await store.longterm.facts(DM) == ["my name is Ada"]  # kept, listed, not used
    assert await store.longterm.recall(DM, "what's my name?", window=0) == []
    await store.longterm.set_remember("telegram", "alice", True)
    assert [r.text for r in await store.longterm.recall(DM, "what's my name?", window=0)] == [
        "my name is Ada"
    ]


async def test_forget_one_fact_by_its_number(store: MemoryStore) -> None:
    await _say(store, DM, "My name is Ada. I have a dog named Rex.")
    assert await store.longterm.forget_fact(DM, 3) is None
    assert await store.longterm.forget_fact(DM, 1) == "my name is Ada"
    assert await store.longterm.facts(DM) == ["I have a dog named Rex"]


def test_relevance_prefers_facts_about_what_is_asked() -> None:
    from memory.recall import FoundTurn, StoredFact

    facts = [
        StoredFact(1, "name", "my name is Ada", "hi, my name is Ada", 1),
        StoredFact(2, "pet", "I have a dog named Rex", "I have a dog named Rex", 3),
        StoredFact(3, "city", "I live in Lyon", "I live in Lyon", 5),
        StoredFact(4, "pref", "I love jazz", "I love jazz", 6),
        StoredFact(5, "pref", "I love sushi", "I love sushi", 8),
    ]
    turns = [
        FoundTurn(3, "I have a dog named Rex"),  # a fact's own source: the fact says it
        FoundTurn(7, "my dog Rex chewed my shoes"),
        FoundTurn(9, "the dog park was busy"),
        FoundTurn(10, "that's not my real name haha"),
        FoundTurn(11, "does your dog like parks?"),  # a question tells nothing
    ]
    ranked = rank("what is my dog's name?", facts, turns)
    # The pet cue and a shared word; "my name is Ada" answers another question; "name" is for the
    # facts to answer, so older turns count by "dog" alone.
    assert [r.text for r in ranked] == [
        "I have a dog named Rex",
        "the dog park was busy",
        "my dog Rex chewed my shoes",
    ]
    assert [r.text for r in rank("what is my name?", facts, turns)] == ["my name is Ada"]
    ranked = rank("my dog Rex is sick", facts, turns)  # three words: a turn must share two
    assert [r.text for r in ranked] == ["I have a dog named Rex", "my dog Rex chewed my shoes"]
    assert [r.text for r in rank("what do I love?", facts, turns)] == ["I love sushi", "I love jazz"]
    assert [r.text for r in rank("which food do I love, sushi?", facts, turns)] == ["I love sushi"]
    assert rank("lol ok", facts, turns) == []


@pytest.fixture(scope="module")
def real_400m() -> BlenderbotTokenizer:
    return BlenderbotTokenizer.from_folder(REAL_400M, BlenderbotConfig.from_folder(REAL_400M))


def _piece(text_: str, at: int, source: str | None = None) -> Remembered:
    return Remembered(text_, source if source is not None else text_, at, 1.0, True)


HISTORY = [
    ("user", "Good morning! It is raining again here, the third day in a row this week."),
    ("bot", "Oh no, I hope it clears up soon. Do you have plans for the weekend?"),
    ("user", "I went to the market this morning and bought some apples."),
    ("bot", "That sounds nice. What kind of apples did you buy?"),
    ("user", "Green ones, they are my favourite kind for baking pies at home."),
    ("bot", "Yum, I love apple pie. Do you bake often?"),
    ("user", "Every weekend if I can, it relaxes me after a long week."),
    ("bot", "That is a great way to unwind."),
    ("user", "what is my name and do I have pets?"),
]


def test_the_memory_block_costs_at_most_its_budget_in_whole_pieces(real_400m: BlenderbotTokenizer) -> None:
    pieces = [_piece("my name is Ada", 1), _piece("I have a dog named Rex", 2), _piece("I live in Lyon", 3)]
    cost_two = len(real_400m.encode_plain("  ".join([" my name is Ada", " I have a dog named Rex"])))
    cost_three = len(
        real_400m.encode_plain("  ".join([" my name is Ada", " I have a dog named Rex", " I live in Lyon"]))
    )
    for budget, kept in ((cost_two, 2), (cost_three - 1, 2), (cost_three, 3), (0, 0)):
        ctx = build_context(HISTORY, tokenizer=real_400m, limit=128, remembered=pieces, memory_tokens=budget)
        assert len(ctx.remembered) == kept and ctx.memory_tokens <= budget
        assert len(ctx.ids) <= 128
        decoded = real_400m.decode(ctx.ids)
        for piece in pieces[:kept]:
            assert piece.text in decoded
    ctx = build_context(HISTORY, tokenizer=real_400m, limit=128, remembered=pieces, memory_tokens=cost_three)
    assert ctx.memory_tokens == cost_three
    body = "  ".join([" my name is Ada", " I have a dog named Rex", " I live in Lyon"])
    assert real_400m.decode(ctx.ids).startswith(body.strip())  # oldest first, before the recent turns
    without = build_context(HISTORY, tokenizer=real_400m, limit=128)
    assert ctx.turns < without.turns  # the recent turns gave way to the memory budget
    assert len(ctx.ids) <= 128 and ctx.ids[-1] == real_400m.eos_id


def test_the_newest_turn_comes_before_memory(real_400m: BlenderbotTokenizer) -> None:
    long_turn = " ".join(["word"] * 140)
    ctx = build_context(
        [("user", long_turn)],
        tokenizer=real_400m,
        limit=128,
        remembered=[_piece("my name is Ada", 1)],
        memory_tokens=32,
    )
    assert ctx.remembered == () and len(ctx.ids) == 128


def test_a_piece_the_recent_turns_show_is_not_repeated(real_400m: BlenderbotTokenizer) -> None:
    history = [("user", "hi, my name is Ada"), ("bot", "hello Ada"), ("user", "what's my name?")]
    shown = _piece("my name is Ada", 1, source="hi, my name is Ada")
    ctx = build_context(history, tokenizer=real_400m, limit=128, remembered=[shown], memory_tokens=32)
    assert ctx.remembered == () and ctx.turns == 3
    gone = _piece("I have a dog named Rex", 0, source="an old turn no longer in the history")
    ctx = build_context(history, tokenizer=real_400m, limit=128, remembered=[shown, gone], memory_tokens=32)
    assert ctx.remembered == ("I have a dog named Rex",)


def test_partner_persona_style_puts_facts_in_persona_lines(real_400m: BlenderbotTokenizer) -> None:
    pieces = [_piece("my name is Ada", 1)]
    ctx = build_context(
        HISTORY,
        tokenizer=real_400m,
        limit=128,
        persona=("I love music.",),
        remembered=pieces,
        memory_tokens=32,
        memory_style="partner_persona",
    )
    decoded = real_400m.decode(ctx.ids)
    assert decoded.startswith("your persona: I love music.\npartner's persona: my name is Ada\n")
    assert ctx.memory_tokens == len(real_400m.encode_plain("partner's persona: my name is Ada"))
