"""Beam search keeps each surviving beam in its cache row; the cache copies only the other rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import model
from model.beam_search import place
from model.layers.kv_cache import KVCache


def _cache(batch: int, length: int) -> KVCache:
    cache = KVCache(
        layers=2,
        batch=batch,
        heads=2,
        head_dim=3,
        capacity=8,
        dtype=torch.float32,
        device=torch.device("cpu"),
    )
    for layer in range(2):
        k = torch.randn(batch, 2, length, 3, generator=torch.Generator().manual_seed(layer))
        cache.update(layer, k, -k)
    cache.advance(length)
    return cache


def test_reorder_makes_each_row_a_copy_of_its_source_even_in_cycles() -> None:
    cache = _cache(batch=5, length=4)
    before_k, before_v = cache.keys.clone(), cache.values.clone()
    rows = torch.tensor([1, 0, 0, 3, 2])  # 0 and 1 swap, 2 takes 0, 3 stays, 4 takes 2
    cache.reorder(rows)
    assert torch.equal(cache.keys[:, :, :, :4], before_k[:, rows, :, :4])
    assert torch.equal(cache.values[:, :, :, :4], before_v[:, rows, :, :4])


def test_reorder_leaves_rows_that_stay_and_positions_past_the_length_alone() -> None:
    cache = _cache(batch=3, length=2)
    cache.keys[:, :, :, 2:] = 7.0  # past the valid length
    kept = cache.keys[:, 1].clone()
    cache.reorder(torch.tensor([2, 1, 2]))
    assert torch.equal(cache.keys[:, 1], kept)
    assert bool((cache.keys[:, :, :, 2:] == 7.0).all())
    with pytest.raises(model.CacheContractError, match="3 rows"):
        cache.reorder(torch.tensor([0, 1]))


@pytest.mark.parametrize("seed", range(20))
def test_place_keeps_first_extensions_in_place_and_moves_only_the_rest(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(0, 6, (4, 6), generator=generator)  # 4 inputs, 6 beams
    order = place(source)
    for b in range(4):
        assert sorted(order[b].tolist()) == list(range(6))  # every new beam has one row
        placed = source[b, order[b]]  # the old beam that the new beam in row r extends
        moved = int((placed != torch.arange(6)).sum())
        assert moved == 6 - len(set(source[b].tolist()))  # one copy per extra extension
        for old in set(source[b].tolist()):
            first = int((source[b] == old).nonzero()[0])  # its first extension keeps its row
            assert int(order[b, old]) == first


def test_beam_replies_are_unchanged_by_the_row_placement(checkpoint_dir: Path) -> None:
    """The cached rows follow the placed beams: the same replies and scores as without a cache,
    which re-runs every beam's whole prefix and so cannot hold a stale row."""
    bot = model.load(checkpoint_dir, device="cpu", dtype="float32")
    ids = [bot.tokenizer.encode("I love dogs and cats. Do you have any pets at home?")]
    settings = model.GenerationSettings(num_beams=5, num_return=5, max_length=16, min_length=8)
    cached = bot.generate(ids, settings)[0]
    uncached = bot.generate(ids, settings, use_cache=False)[0]
    assert [h.tokens for h in cached] == [h.tokens for h in uncached]
    assert [h.score for h in cached] == pytest.approx([h.score for h in uncached], abs=1e-4)
