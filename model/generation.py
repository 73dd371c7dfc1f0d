"""Greedy, sampling and beam search over a :class:`BlenderbotBackbone`: :func:`generate`.

Greedy decoding and sampling are here; beam search (transformers' vectorised implementation,
``early_stopping=False``) is in :mod:`model.beam_search`; what they share is in
:mod:`model.decoding`. Lengths count decoder positions including the start token.
"""

from __future__ import annotations

import torch

from model.backbone import BlenderbotBackbone
from model.beam_search import beam_search
from model.config import BlenderbotConfig
from model.decoding import Decoder, Processors, Ranked, rank
from model.settings import GenerationSettings


def generate(
    backbone: BlenderbotBackbone,
    inputs: list[list[int]],
    settings: GenerationSettings,
    *,
    use_cache: bool = True,
) -> list[Ranked]:
    """Hypotheses for each input, best first: ``(ids without the start token, score)``."""
    config = backbone.config
    beam = settings.num_beams > 1
    repeat = settings.num_beams if beam else (settings.num_return if settings.do_sample else 1)
    device = backbone.torch_device
    decoder = Decoder(backbone, inputs, repeat=repeat, capacity=settings.max_length, use_cache=use_cache)
    processors = Processors.build(settings, config, inputs, repeat, device)
    if beam:
        return beam_search(decoder, processors, len(inputs), settings, config)
    return _sample_or_greedy(decoder, processors, len(inputs), repeat, settings, config)


def _sample_or_greedy(
    decoder: Decoder,
    processors: Processors,
    batch: int,
    repeat: int,
    settings: GenerationSettings,
    config: BlenderbotConfig,
) -> list[Ranked]:
    rows = batch * repeat
    device = decoder.backbone.torch_device
    seqs = torch.full((rows, settings.max_length), config.pad_token_id, dtype=torch.long, device=device)
    seqs[:, 0] = config.decoder_start_token_id
    lengths = torch.full((rows,), settings.max_length, dtype=torch.long, device=device)
    log_score = torch.zeros(rows, dtype=torch.float32, device=device)
    running = torch.ones(rows, dtype=torch.bool, device=device)
    generator = None
    if settings.do_sample:
        generator = torch.Generator(device=device)
        if settings.seed is not None:
            generator.manual_seed(settings.seed)
        else:
            generator.seed()
    cur_len = 1
    while cur_len < settings.max_length:
        prefix = seqs[:, :cur_len]
        scores = processors(prefix, decoder.logits(prefix))  # [N, V]
        if settings.do_sample:
            scores = processors.warp(scores)
            tokens = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        step_logp = scores.log_softmax(dim=-1).gather(1, tokens[:, None]).squeeze(1)
        tokens = torch.where(running, tokens, config.pad_token_id)
        log_score += torch.where(running, step_logp, 0.0)
        seqs[:, cur_len] = tokens
        ended = running & (tokens == config.eos_token_id)
        lengths = torch.where(ended, cur_len + 1, lengths)
        running &= ~ended
        cur_len += 1
        if not bool(running.any()):
            break
    generated = (lengths - 1).clamp(min=1).float()
    final = log_score / generated**settings.length_penalty
    return rank(seqs, lengths, final, batch, repeat, settings.num_return)
