"""The Keras port against transformers on tiny random checkpoints of both architectures."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import model
from model import GenerationSettings

TEXTS = [
    "Hello, how are you doing today?",
    "I love dogs and cats. Do you have any pets at home?",
    "pizza",
]


@cache
def ours(folder: Path) -> model.Blenderbot:
    return model.load(folder, device="cpu")


@cache
def theirs(folder: Path) -> Any:
    return AutoModelForSeq2SeqLM.from_pretrained(str(folder), attn_implementation="eager").eval()


def reference_generate(folder: Path, ids: list[int], **settings: Any) -> list[list[int]]:
    kwargs: dict[str, Any] = {
        "no_repeat_ngram_size": 0,
        "encoder_no_repeat_ngram_size": 0,
        "length_penalty": 1.0,
        "min_length": 0,
    }
    kwargs.update(settings)
    num_return = kwargs.pop("num_return", 1)
    with torch.no_grad():
        out = theirs(folder).generate(
            torch.tensor([ids]),
            do_sample=False,
            early_stopping=False,
            forced_eos_token_id=2,
            num_return_sequences=num_return,
            **kwargs,
        )
    result = []
    for row in out.tolist():
        row = row[1:]
        if 2 in row:
            row = row[: row.index(2) + 1]
        result.append(row)
    return result


def test_logits_match_transformers(checkpoint_dir: Path) -> None:
    m = ours(checkpoint_dir)
    rows = [m.tokenizer.encode(t) for t in TEXTS]
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    decoder = np.array([[1, 7, 9, 11, 13, 17, 19]] * len(rows))
    got = m.logits(ids, decoder, mask)
    with torch.no_grad():
        want = theirs(checkpoint_dir)(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(decoder),
        ).logits.numpy()
    assert got.shape == want.shape == (len(rows), decoder.shape[1], m.config.vocab_size)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(want).max() > 1.0  # the check compares real signal, not zeros


SEARCHES = [
    {"num_beams": 1, "max_length": 24},
    {
        "num_beams": 1,
        "max_length": 30,
        "min_length": 18,
        "no_repeat_ngram_size": 2,
        "encoder_no_repeat_ngram_size": 2,
    },
    {
        "num_beams": 4,
        "max_length": 20,
        "min_length": 6,
        "length_penalty": 0.65,
        "no_repeat_ngram_size": 3,
        "encoder_no_repeat_ngram_size": 3,
    },
    {"num_beams": 5, "max_length": 26, "min_length": 14, "length_penalty": 1.3, "no_repeat_ngram_size": 2},
    {"num_beams": 3, "max_length": 16, "length_penalty": 0.0, "encoder_no_repeat_ngram_size": 1},
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_generation_matches_transformers(checkpoint_dir: Path, search: dict[str, Any]) -> None:
    m = ours(checkpoint_dir)
    for text in TEXTS:
        ids = m.tokenizer.encode(text)
        want = reference_generate(checkpoint_dir, ids, **search)[0]
        got = m.generate([ids], GenerationSettings(**search))[0][0]
        assert list(got.tokens) == want, text
        if "min_length" in search:
            assert len(got.tokens) + 1 >= search["min_length"]


def test_nbest_matches_transformers_beams(checkpoint_dir: Path) -> None:
    m = ours(checkpoint_dir)
    ids = m.tokenizer.encode(TEXTS[1])
    search: dict[str, Any] = {"num_beams": 4, "max_length": 18, "min_length": 4, "length_penalty": 0.65}
    want = reference_generate(checkpoint_dir, ids, num_return=3, **search)
    got = m.generate([ids], GenerationSettings(num_return=3, **search))[0]
    assert [list(h.tokens) for h in got] == want
    scores = [h.score for h in got]
    assert scores == sorted(scores, reverse=True)
    assert all(h.text == m.tokenizer.decode(h.tokens) for h in got)


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(max_length=20),
        GenerationSettings(
            num_beams=4, max_length=20, min_length=8, no_repeat_ngram_size=3, encoder_no_repeat_ngram_size=3
        ),
    ],
    ids=["greedy", "beam"],
)
def test_cache_on_and_off_agree(checkpoint_dir: Path, settings: GenerationSettings) -> None:
    m = ours(checkpoint_dir)
    rows = [m.tokenizer.encode(t) for t in TEXTS]
    cached = m.generate(rows, settings)
    uncached = m.generate(rows, settings, use_cache=False)
    assert [[h.tokens for h in hs] for hs in cached] == [[h.tokens for h in hs] for hs in uncached]


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(max_length=22),
        GenerationSettings(
            num_beams=3, max_length=18, min_length=5, encoder_no_repeat_ngram_size=3, num_return=2
        ),
    ],
    ids=["greedy", "beam"],
)
def test_padded_batch_equals_one_by_one(checkpoint_dir: Path, settings: GenerationSettings) -> None:
    m = ours(checkpoint_dir)
    rows = [m.tokenizer.encode(t) for t in TEXTS]
    assert len({len(r) for r in rows}) == len(rows)  # really different lengths
    batched = m.generate(rows, settings)
    single = [m.generate([r], settings)[0] for r in rows]
    assert [[h.tokens for h in hs] for hs in batched] == [[h.tokens for h in hs] for hs in single]
    for b, s in zip(batched, single, strict=True):
        assert [h.score for h in b] == pytest.approx([h.score for h in s], abs=1e-4)


def test_sampling_is_seeded_and_topk1_is_greedy(blenderbot_dir: Path) -> None:
    m = ours(blenderbot_dir)
    ids = [m.tokenizer.encode(TEXTS[0])]
    sample = GenerationSettings(do_sample=True, top_k=20, top_p=0.9, temperature=1.5, seed=7, max_length=20)
    first = m.generate(ids, sample)[0][0].tokens
    assert m.generate(ids, sample)[0][0].tokens == first
    others = {m.generate(ids, sample.with_overrides(seed=s))[0][0].tokens for s in range(8)}
    assert len(others) > 1  # different seeds explore different replies
    greedy = m.generate(ids, GenerationSettings(max_length=20))[0][0].tokens
    top1 = m.generate(ids, GenerationSettings(do_sample=True, top_k=1, seed=3, max_length=20))[0][0].tokens
    assert top1 == greedy
    several = m.generate(ids, sample.with_overrides(num_return=4))[0]
    assert len(several) == 4
    assert [h.score for h in several] == sorted((h.score for h in several), reverse=True)


def test_defaults_come_from_the_checkpoint(tmp_path: Path) -> None:
    from tests.checkpoints import build_blenderbot

    folder = build_blenderbot(
        tmp_path / "ck",
        generation={
            "num_beams": 10,
            "min_length": 20,
            "max_length": 60,
            "length_penalty": 0.65,
            "no_repeat_ngram_size": 3,
            "encoder_no_repeat_ngram_size": 3,
        },
    )
    m = model.load(folder, device="cpu")
    assert m.default_settings == GenerationSettings(
        num_beams=10,
        min_length=20,
        max_length=60,
        length_penalty=0.65,
        no_repeat_ngram_size=3,
        encoder_no_repeat_ngram_size=3,
    )
    ids = m.tokenizer.encode(TEXTS[0])
    want = reference_generate(
        folder,
        ids,
        num_beams=10,
        min_length=20,
        max_length=60,
        length_penalty=0.65,
        no_repeat_ngram_size=3,
        encoder_no_repeat_ngram_size=3,
    )[0]
    assert list(m.generate([ids])[0][0].tokens) == want


def test_bfloat16_runs_and_mostly_agrees(blenderbot_dir: Path) -> None:
    m16 = model.load(blenderbot_dir, device="cpu", dtype="bfloat16")
    m32 = ours(blenderbot_dir)
    ids = [m32.tokenizer.encode(TEXTS[0])]
    a = m32.logits(ids, [[1, 5, 6]])
    b = m16.logits(ids, [[1, 5, 6]])
    assert b.dtype == np.float32
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert len(m16.generate(ids, GenerationSettings(max_length=10))[0][0].tokens) >= 1
