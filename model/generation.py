"""Greedy, sampling and beam search over a :class:`BlenderbotBackbone`.

The encoder runs once per batch and cross-attention keys/values are projected once; each step
then feeds one token per row through the decoder with a preallocated :class:`KVCache`.
Beam search follows transformers' vectorised implementation (``early_stopping=False``), and the
logits processors are applied in transformers' order: no_repeat_ngram, encoder_no_repeat_ngram,
min_length, forced_eos (then temperature, top-k, top-p when sampling). Lengths count decoder
positions including the start token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.backbone import BlenderbotBackbone, encoder_mask
from model.config import BlenderbotConfig
from model.layers.kv_cache import KVCache
from model.settings import GenerationSettings

_NEG = -1.0e9

Ranked = list[tuple[tuple[int, ...], float]]  # (generated ids, score), best first


class _Decoder:
    """Feeds the newest token of every row to the decoder; the cache holds the rest.

    Without a cache (``use_cache=False``) every step re-runs the whole prefix: slow, and kept as
    the reference the cached path is tested against.
    """

    def __init__(
        self,
        backbone: BlenderbotBackbone,
        inputs: list[list[int]],
        *,
        repeat: int,
        capacity: int,
        use_cache: bool,
    ) -> None:
        c = backbone.config
        device = backbone.torch_device
        longest = max(len(x) for x in inputs)
        ids = torch.full((len(inputs), longest), c.pad_token_id, dtype=torch.long, device=device)
        present = torch.zeros((len(inputs), longest), dtype=torch.long, device=device)
        for row, seq in enumerate(inputs):  # right padding, as transformers' Blenderbot tokenizer
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
            present[row, : len(seq)] = 1
        mask = encoder_mask(present)  # [B, 1, 1, S], or None when nothing is padded
        encoded = backbone.encode(ids, mask)  # [B, S, D]
        if repeat > 1:
            encoded = encoded.repeat_interleave(repeat, dim=0)  # [B * repeat, S, D]
            mask = None if mask is None else mask.repeat_interleave(repeat, dim=0)
        self.backbone = backbone
        self.cross_kv = backbone.cross_kv(encoded)
        self.cross_mask = mask
        self.cache = (
            KVCache(
                layers=c.decoder_layers,
                batch=encoded.shape[0],
                heads=c.decoder_attention_heads,
                head_dim=c.d_model // c.decoder_attention_heads,
                capacity=capacity,
                dtype=encoded.dtype,
                device=device,
            )
            if use_cache
            else None
        )

    def logits(self, seqs: torch.Tensor) -> torch.Tensor:
        """``seqs: [N, cur_len]`` -> next-token logits ``[N, V]`` (float32)."""
        if self.cache is None:
            tokens, start = seqs, 0
        else:
            tokens, start = seqs[:, self.cache.length :], self.cache.length
        hidden = self.backbone.decode(
            tokens, start=start, cross_kv=self.cross_kv, cross_mask=self.cross_mask, cache=self.cache
        )
        return self.backbone.lm_logits(hidden[:, -1])

    def reorder(self, rows: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(rows)


@dataclass
class _Processors:
    settings: GenerationSettings
    eos: int
    forced_eos: int | None
    encoder_windows: torch.Tensor | None  # [N, W, n] encoder n-grams per row, padded with -1

    @classmethod
    def build(
        cls,
        settings: GenerationSettings,
        config: BlenderbotConfig,
        inputs: list[list[int]],
        repeat: int,
        device: torch.device,
    ) -> _Processors:
        windows = None
        n = settings.encoder_no_repeat_ngram_size
        if n > 0:
            width = max(max(len(x) for x in inputs) - n + 1, 1)
            per_input = torch.full((len(inputs), width, n), -1, dtype=torch.long, device=device)
            for row, seq in enumerate(inputs):
                if len(seq) >= n:
                    t = torch.tensor(seq, dtype=torch.long, device=device)
                    per_input[row, : len(seq) - n + 1] = t.unfold(0, n, 1)  # [W, n]
            windows = per_input.repeat_interleave(repeat, dim=0)
        return cls(settings, config.eos_token_id, config.forced_eos_token_id, windows)

    def __call__(self, seqs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``seqs: [N, cur_len]``, ``scores: [N, V]`` -> processed scores."""
        s = self.settings
        cur_len = seqs.shape[1]
        if s.no_repeat_ngram_size and cur_len >= s.no_repeat_ngram_size:
            n = s.no_repeat_ngram_size
            windows = seqs.unfold(1, n, 1)  # [N, cur_len - n + 1, n]
            scores = _ban_matches(scores, windows, seqs[:, cur_len + 1 - n :])
        if self.encoder_windows is not None and cur_len >= s.encoder_no_repeat_ngram_size - 1:
            n = s.encoder_no_repeat_ngram_size
            prefix = seqs[:, cur_len + 1 - n :] if n > 1 else seqs[:, :0]
            scores = _ban_matches(scores, self.encoder_windows, prefix)
        if cur_len < s.min_length:
            scores = scores.clone()
            scores[:, self.eos] = -float("inf")
        if self.forced_eos is not None and cur_len == s.max_length - 1:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.forced_eos] = 0.0
        return scores

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        """Temperature, top-k and top-p, for sampling."""
        s = self.settings
        if s.temperature != 1.0:
            scores = scores / s.temperature
        if s.top_k:
            k = min(s.top_k, scores.shape[-1])
            threshold = torch.topk(scores, k).values[:, -1:]
            scores = scores.masked_fill(scores < threshold, -float("inf"))
        if s.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative <= (1 - s.top_p)
            drop[:, -1] = False  # always keep the most likely token
            scores = scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))
        return scores


def _ban_matches(scores: torch.Tensor, windows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Ban the last token of each n-gram in ``windows: [N, W, n]`` that starts with ``prefix: [N, n-1]``."""
    matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1) & (windows[..., -1] >= 0)  # [N, W]
    vocab = scores.shape[-1]
    banned = torch.zeros((scores.shape[0], vocab + 1), dtype=torch.bool, device=scores.device)
    # Non-matching windows write to a spare column past the vocabulary.
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(0, vocab), vocab), True)
    return scores.masked_fill(banned[:, :vocab], -float("inf"))


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
    decoder = _Decoder(backbone, inputs, repeat=repeat, capacity=settings.max_length, use_cache=use_cache)
    processors = _Processors.build(settings, config, inputs, repeat, device)
    if beam:
        return _beam_search(decoder, processors, len(inputs), settings, config)
    return _sample_or_greedy(decoder, processors, len(inputs), repeat, settings, config)


def _sample_or_greedy(
    decoder: _Decoder,
    processors: _Processors,
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
    return _rank(seqs, lengths, final, batch, repeat, settings.num_return)


def _rank(
    seqs: torch.Tensor, lengths: torch.Tensor, scores: torch.Tensor, batch: int, group: int, keep: int
) -> list[Ranked]:
    seq_list, len_list, score_list = seqs.tolist(), lengths.tolist(), scores.tolist()
    out: list[Ranked] = []
    for b in range(batch):
        rows = range(b * group, (b + 1) * group)
        ranked = sorted(
            ((tuple(seq_list[r][1 : len_list[r]]), score_list[r]) for r in rows), key=lambda h: -h[1]
        )
        out.append(ranked[:keep])
    return out


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values: [B, K, ...]``, ``index: [B, J]`` -> ``[B, J, ...]``."""
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, expanded)


@dataclass
class _BeamState:
    """Beam search over ``B`` inputs with ``K`` beams each, sequences of at most ``L`` tokens."""

    running: torch.Tensor  # [B, K, L] the open beams' tokens
    running_scores: torch.Tensor  # [B, K] their summed log-probabilities
    done: torch.Tensor  # [B, K, L] the best finished hypotheses so far
    done_scores: torch.Tensor  # [B, K] their length-penalised scores (_NEG: an empty place)
    done_lengths: torch.Tensor  # [B, K] their lengths, the start token included
    done_flags: torch.Tensor  # [B, K] bool: the place holds a finished hypothesis
    improvable: torch.Tensor  # [B, 1] bool: an open beam could still beat the worst finished one

    @classmethod
    def start(
        cls, batch: int, beams: int, max_len: int, config: BlenderbotConfig, device: torch.device
    ) -> _BeamState:
        running = torch.full((batch, beams, max_len), config.pad_token_id, dtype=torch.long, device=device)
        running[:, :, 0] = config.decoder_start_token_id
        running_scores = torch.zeros((batch, beams), device=device)
        running_scores[:, 1:] = _NEG  # only the first beam expands at the first step
        return cls(
            running=running,
            running_scores=running_scores,
            done=running.clone(),
            done_scores=torch.full((batch, beams), _NEG, device=device),
            done_lengths=torch.full((batch, beams), max_len, dtype=torch.long, device=device),
            done_flags=torch.zeros((batch, beams), dtype=torch.bool, device=device),
            improvable=torch.ones((batch, 1), dtype=torch.bool, device=device),
        )

    def finish(
        self, ended: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor, length: int
    ) -> None:
        """Let the candidates that ``ended`` ([B, 2K]) compete for the finished places."""
        scores = scores + (~self.improvable).float() * _NEG + (~ended).float() * _NEG
        merged = torch.cat((self.done_scores, scores), dim=1)  # [B, 3K]
        best = torch.topk(merged, self.done_scores.shape[1]).indices
        self.done = _gather(torch.cat((self.done, candidates), dim=1), best)
        self.done_scores = _gather(merged, best)
        lengths = torch.full_like(scores, length, dtype=torch.long)
        self.done_lengths = _gather(torch.cat((self.done_lengths, lengths), dim=1), best)
        self.done_flags = _gather(torch.cat((self.done_flags, ended), dim=1), best)

    def ranked(self, batch: int, beams: int, keep: int) -> list[Ranked]:
        max_len = self.done.shape[-1]
        return _rank(
            self.done.view(batch * beams, max_len),
            self.done_lengths.view(-1),
            self.done_scores.view(-1),
            batch,
            beams,
            keep,
        )


def _beam_search(
    decoder: _Decoder,
    processors: _Processors,
    batch: int,
    settings: GenerationSettings,
    config: BlenderbotConfig,
) -> list[Ranked]:
    beams, max_len, lp = settings.num_beams, settings.max_length, settings.length_penalty
    keep = 2 * beams  # enough candidates that num_beams stay open even if num_beams just ended
    device = decoder.backbone.torch_device
    state = _BeamState.start(batch, beams, max_len, config, device)
    top_mask = torch.arange(keep, device=device) < beams  # [2K]
    row_offset = torch.arange(batch, device=device)[:, None] * beams  # [B, 1]
    cur_len = 1
    while True:
        flat = state.running.view(batch * beams, max_len)[:, :cur_len]  # [B*K, cur_len]
        logp = processors(flat, decoder.logits(flat).log_softmax(dim=-1))  # [B*K, V]
        vocab = logp.shape[-1]
        total = (logp.view(batch, beams, vocab) + state.running_scores[:, :, None]).view(batch, beams * vocab)
        top_scores, top_index = torch.topk(total, keep)  # [B, 2K]
        source = top_index // vocab  # beam each candidate extends
        candidates = _gather(state.running, source)  # [B, 2K, L]
        candidates[:, :, cur_len] = top_index % vocab
        hits = (candidates[:, :, cur_len] == config.eos_token_id) | (cur_len + 1 >= max_len)  # [B, 2K]

        # The best num_beams candidates that did not end keep running.
        open_scores = top_scores + hits.float() * _NEG
        chosen = torch.topk(open_scores, beams).indices  # [B, K]
        state.running = _gather(candidates, chosen)
        state.running_scores = _gather(open_scores, chosen)
        chosen_source = _gather(source, chosen)

        # Among the first num_beams candidates, those that ended compete for the finished list.
        state.finish(hits & top_mask[None, :], candidates, top_scores / (cur_len**lp), cur_len + 1)

        decoder.reorder((chosen_source + row_offset).view(-1))
        cur_len += 1
        # Could a running beam still beat the worst finished one (transformers' heuristic)?
        best_running = state.running_scores[:, :1] / ((cur_len - 1) ** lp)
        worst_done = torch.where(state.done_flags, state.done_scores.min(dim=1, keepdim=True).values, _NEG)
        state.improvable = state.improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        if not bool(state.improvable.any()) or bool(hits.all()):
            break
    return state.ranked(batch, beams, settings.num_return)
