"""CTranslate2 int8 beside our int8, on the same random weights (for benchmarks/model_bench.py --ct2).

CTranslate2 has no Blenderbot loader. Blenderbot is a BART with pre-LayerNorm layers, a final
LayerNorm after each stack, no LayerNorm on the embeddings and learned positions without BART's
offset of 2, so BART's loader converts it once told so; it lives here, in the benchmark, not in
the product. CTranslate2 has no encoder_no_repeat_ngram_size, so the beam row here leaves it out
on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import model

Timer = Callable[[Callable[[], Any], Callable[[], Any], int], tuple[float, float]]
Row = Callable[..., None]


def _register_loader() -> None:
    from ctranslate2.converters import transformers as ct2

    if "BlenderbotConfig" in ct2._MODEL_LOADERS:
        return

    @ct2.register_loader("BlenderbotConfig")
    class BlenderbotLoader(ct2.BartLoader):
        @property
        def architecture_name(self) -> str:
            return "BlenderbotForConditionalGeneration"

        def get_model_spec(self, net: Any) -> Any:
            net.config.normalize_before = True  # pre-LayerNorm layers
            net.config.normalize_embedding = False  # no layernorm_embedding
            return super().get_model_spec(net)


def translator(folder: Path, out: Path, compute_type: str) -> Any:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    _register_loader()
    if not (out / "model.bin").exists():  # converted once in float32; int8 is quantised at load
        TransformersConverter(str(folder)).convert(str(out), force=True)
    return ctranslate2.Translator(
        str(out),
        device="cpu",
        compute_type=compute_type,
        inter_threads=1,
        intra_threads=torch.get_num_threads(),
    )


def compare(
    ours: model.Blenderbot,
    ours_fp32: model.Blenderbot | None,
    folder: Path,
    out: Path,
    repeats: int,
    side_by_side: Timer,
    row: Row,
) -> None:
    """Time our int8 against CTranslate2's int8; first check the conversion on float32 log-probs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    context = list(range(10, 70))  # the same 60-token conversation as the other rows, + </s> on both
    ids = [*context, ours.tokenizer.eos_id]
    source = tokenizer.convert_ids_to_tokens(ids)
    if ours_fp32 is not None:
        target = torch.randint(10, 8000, (15,), generator=torch.Generator().manual_seed(0)).tolist()
        scored = translator(folder, out, "float32").score_batch(
            [source], [tokenizer.convert_ids_to_tokens(target)]
        )
        decoder = [[ours_fp32.config.decoder_start_token_id, *target]]
        logprobs = torch.log_softmax(torch.as_tensor(ours_fp32.logits([ids], decoder)), -1)[0]
        picked = [float(logprobs[i, t]) for i, t in enumerate([*target, ours.tokenizer.eos_id])]
        worst = max(abs(a - b) for a, b in zip(scored[0].log_probs, picked, strict=True))
        print(
            f"# conversion check: float32 log-probs of 16 tokens, CTranslate2 vs ours, max diff {worst:.1e}"
        )
    engine = translator(folder, out, "int8")
    print(f"# CTranslate2 {_version()}, compute_type int8, {torch.get_num_threads()} threads", flush=True)
    greedy = model.GenerationSettings(num_beams=1, max_length=33, min_length=33)
    beam = model.GenerationSettings(
        num_beams=10, max_length=61, min_length=61, length_penalty=0.65, no_repeat_ngram_size=3
    )
    greedy_ct2 = {"beam_size": 1, "max_decoding_length": 32, "min_decoding_length": 32}
    beam_ct2 = {
        "beam_size": 10,
        "max_decoding_length": 60,
        "min_decoding_length": 60,
        "length_penalty": 0.65,
        "no_repeat_ngram_size": 3,
    }
    cases: list[tuple[str, model.GenerationSettings, int, dict[str, Any]]] = [
        ("greedy 32 tokens, batch 1", greedy, 1, greedy_ct2),
        ("beam 10, full 60 tokens", beam, 1, beam_ct2),
        ("greedy batch 16", greedy, 16, greedy_ct2),
    ]
    for name, settings, batch, kwargs in cases:

        def mine(s: model.GenerationSettings = settings, n: int = batch) -> Any:
            return ours.generate([ids] * n, s)

        def theirs(n: int = batch, k: dict[str, Any] = kwargs) -> Any:
            return engine.translate_batch([source] * n, **k)

        a, b = side_by_side(mine, theirs, repeats)
        row(f"[int8 vs ct2 int8] {name} (s)", a, b, "ratio = ours / CTranslate2")


def _version() -> str:
    import ctranslate2

    return str(ctranslate2.__version__)
