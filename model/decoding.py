"""What greedy, sampling and beam search share: the cached decoder, the logits processors, ranking.

The encoder runs once per batch and cross-attention keys/values are projected once; each step
then feeds one token per row through the decoder with a preallocated :class:`KVCache`. The
logits processors are applied in transformers' order: no_repeat_ngram, encoder_no_repeat_ngram,
min_length, forced_eos (then temperature, top-k, top-p when sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.backbone import BlenderbotBackbone, encoder_mask
from model.config import BlenderbotConfig
from model.layers.kv_cache import KVCache
from model.settings import GenerationSettings

NEG = -1.0e9

Ranked = list[tuple[tuple[int, ...], float]]  # (generated ids, score), best first


class Decoder:
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
        self.backbone = backbone
        # The decoder runs B * repeat rows (beams or samples); the rows of one input share its
        # cross-attention keys and values, projected once: [B, H, S, Dh] per layer.
        self.cross_kv = backbone.cross_kv(encoded)
        self.cross_mask = mask
        self.cache = (
            KVCache(
                layers=c.decoder_layers,
                batch=encoded.shape[0] * repeat,
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
class Processors:
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
    ) -> Processors:
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


def rank(
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
