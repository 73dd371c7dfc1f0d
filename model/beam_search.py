"""Beam search as transformers does it (vectorised, ``early_stopping=False``), on :mod:`model.decoding`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.config import BlenderbotConfig
from model.decoding import NEG, Decoder, Processors, Ranked, rank
from model.settings import GenerationSettings


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values: [B, K, ...]``, ``index: [B, J]`` -> ``[B, J, ...]``."""
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, expanded)


def place(source: torch.Tensor) -> torch.Tensor:
    """Which row each new beam takes, so that the fewest cached rows are copied.

    ``source: [B, K]``, the old beam (row within its input's group) that each new beam extends ->
    ``order: [B, K]``, the new beam that goes to row ``r`` is ``order[:, r]``. The first new beam
    extending an old beam takes that beam's row, whose cache then stays where it is; the others
    take the rows of old beams that no new beam extends, and only those rows are copied. Which row
    holds which beam changes nothing else: every per-beam tensor follows the same order.
    """
    beams = source.shape[1]
    index = torch.arange(beams, device=source.device)
    same = source[:, :, None] == source[:, None, :]  # [B, K, K]: new beams j, j2 extend one old beam
    first = ~(same & (index[None, :] < index[:, None])).any(dim=-1)  # [B, K]: no earlier j2 does
    extended = (source[:, :, None] == index).any(dim=1)  # [B, K]: old beam r is extended
    free = torch.argsort(extended.to(torch.int8), dim=1, stable=True)  # rows of dropped beams first
    later = (torch.cumsum(~first, dim=1) - 1).clamp(min=0)  # [B, K]: j's place among the non-first
    row = torch.where(first, source, free.gather(1, later))  # [B, K]: a permutation of 0..K-1
    return torch.argsort(row, dim=1)


@dataclass
class _BeamState:
    """Beam search over ``B`` inputs with ``K`` beams each, sequences of at most ``L`` tokens."""

    running: torch.Tensor  # [B, K, L] the open beams' tokens
    running_scores: torch.Tensor  # [B, K] their summed log-probabilities
    done: torch.Tensor  # [B, K, L] the best finished hypotheses so far
    done_scores: torch.Tensor  # [B, K] their length-penalised scores (NEG: an empty place)
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
        running_scores[:, 1:] = NEG  # only the first beam expands at the first step
        return cls(
            running=running,
            running_scores=running_scores,
            done=running.clone(),
            done_scores=torch.full((batch, beams), NEG, device=device),
            done_lengths=torch.full((batch, beams), max_len, dtype=torch.long, device=device),
            done_flags=torch.zeros((batch, beams), dtype=torch.bool, device=device),
            improvable=torch.ones((batch, 1), dtype=torch.bool, device=device),
        )

    def finish(
        self, ended: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor, length: int
    ) -> None:
        """Let the candidates that ``ended`` ([B, 2K]) compete for the finished places."""
        scores = scores + (~self.improvable).float() * NEG + (~ended).float() * NEG
        merged = torch.cat((self.done_scores, scores), dim=1)  # [B, 3K]
        best = torch.topk(merged, self.done_scores.shape[1]).indices
        self.done = _gather(torch.cat((self.done, candidates), dim=1), best)
        self.done_scores = _gather(merged, best)
        lengths = torch.full_like(scores, length, dtype=torch.long)
        self.done_lengths = _gather(torch.cat((self.done_lengths, lengths), dim=1), best)
        self.done_flags = _gather(torch.cat((self.done_flags, ended), dim=1), best)

    def ranked(self, batch: int, beams: int, keep: int) -> list[Ranked]:
        max_len = self.done.shape[-1]
        return rank(
            self.done.view(batch * beams, max_len),
            self.done_lengths.view(-1),
            self.done_scores.view(-1),
            batch,
            beams,
            keep,
        )


def beam_search(
    decoder: Decoder,
    processors: Processors,
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
        open_scores = top_scores + hits.float() * NEG
        chosen = torch.topk(open_scores, beams).indices  # [B, K]
        chosen = chosen.gather(1, place(source.gather(1, chosen)))  # beams stay in their rows
        state.running = _gather(candidates, chosen)
        state.running_scores = _gather(open_scores, chosen)
        chosen_source = _gather(source, chosen)

        # Among the first num_beams candidates, those that ended compete for the finished list.
        state.finish(hits & top_mask[None, :], candidates, top_scores / (cur_len**lp), cur_len + 1)

        decoder.reorder((chosen_source + row_offset).view(-1))
        cur_len += 1
        # Could a running beam still beat the worst finished one (transformers' heuristic)?
        best_running = state.running_scores.max(dim=1, keepdim=True).values / ((cur_len - 1) ** lp)
        worst_done = torch.where(state.done_flags, state.done_scores.min(dim=1, keepdim=True).values, NEG)
        state.improvable = state.improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        if not bool(state.improvable.any()) or bool(hits.all()):
            break
    return state.ranked(batch, beams, settings.num_return)
