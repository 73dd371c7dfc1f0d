"""The int8 CPU path (fused projections, int8 lm head, beams sharing cross-attention) against float32."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

import model

TEXTS = [
    "Hello, how are you doing today?",
    "I love dogs and cats. Do you have any pets at home?",
    "pizza",
]


@cache
def load(folder: Path, dtype: str) -> model.Blenderbot:
    return model.load(folder, device="cpu", dtype=dtype)


def test_int8_logits_stay_close_to_float32(checkpoint_dir: Path) -> None:
    fp32, int8 = load(checkpoint_dir, "float32"), load(checkpoint_dir, "int8")
    ids = [fp32.tokenizer.encode(TEXTS[1])]
    decoder = [[fp32.config.decoder_start_token_id, *ids[0][:6]]]
    a, b = fp32.logits(ids, decoder), int8.logits(ids, decoder)
    spread = float(np.abs(a).max())
    assert spread > 0
    # per-channel int8 kernels move the logits by several percent of their range (fbgemm's 7-bit
    # activations on the tiny BlenderbotSmall's large random weights: 7.5% and, in one clean-clone
    # run where the same test passed locally, 18%; the cause of that difference is not known); a
    # wrong kernel, bias or split moves them by the whole range
    assert float(np.abs(a - b).max()) < 0.3 * spread
    assert int8.backbone.int8_bytes > 0


def test_int8_holds_no_float_kernels(checkpoint_dir: Path) -> None:
    int8 = load(checkpoint_dir, "int8")
    kernels = [w for w in int8.backbone.weights if w.path.endswith("kernel")]
    assert kernels and all(w.value.numel() == 0 for w in kernels)


@pytest.mark.parametrize("engine", ["onednn", None])
def test_sequence_kernels_on_either_engine_stay_close_to_float32(
    checkpoint_dir: Path, engine: str | None
) -> None:
    """The encoder's and cross-attention's key/value kernels packed for oneDNN (the choice on CPUs
    with AMX) or for fbgemm (elsewhere): both are tested on every machine, whatever it has."""
    if engine is not None and engine not in torch.backends.quantized.supported_engines:
        pytest.fail(f"torch has no {engine} engine here: {torch.backends.quantized.supported_engines}")
    fp32 = load(checkpoint_dir, "float32")
    int8 = model.load(checkpoint_dir, device="cpu", dtype="float32")
    int8.backbone.quantize_int8(sequence_engine=engine)
    encoder = int8.backbone.encoder_layers[0]
    cross = int8.backbone.decoder_layers[0].encoder_attn
    steps = int8.backbone.decoder_layers[0].self_attn
    for weight in (encoder.self_attn._fused, encoder.ffn.fc1._int8, cross._fused):
        assert weight is not None and weight.reduce_range == (engine is None)
    assert steps._fused is not None and steps._fused.reduce_range  # per-step kernels: fbgemm
    d = int8.config.d_model  # oneDNN keeps a second copy of what it packs; both are counted
    assert cross.int8_bytes == 2 * d * d * (2 if engine == "onednn" else 1) + 2 * d * d
    ids = [fp32.tokenizer.encode(TEXTS[1])]
    decoder = [[fp32.config.decoder_start_token_id, *ids[0][:6]]]
    a, b = fp32.logits(ids, decoder), int8.logits(ids, decoder)
    # oneDNN quantises activations to all 8 bits; without VNNI (AVX2 only) it sums u8 x s8 products
    # in pairs into int16, which saturates: blenderbot_small's error there is 0.121 of the logits'
    # range (AVX2-only EPYC; it went from 0.155 to over 0.5 while the small vocabulary changed
    # from build to build, see tests.checkpoints). The product packs for oneDNN only on CPUs with
    # AMX (sequence_engine); fbgemm's 7-bit activations cannot saturate.
    exact = engine is None or _has_vnni()
    assert float(np.abs(a - b).max()) < (0.3 if exact else 0.5) * float(np.abs(a).max())  # as above
    settings = model.GenerationSettings(num_beams=3, max_length=10)
    assert len(int8.generate(ids * 2, settings)) == 2


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def test_parts_quantised_apart_and_stacked_equal_the_stacked_kernel_quantised() -> None:
    """q, k and v (self-attention) become one kernel: quantising each into its rows, as packing
    does, gives the values of quantising the stacked float kernel, bit for bit, also through a
    scratch buffer that a larger kernel (and a float16 one) used before."""
    from model.int8 import Scratch, quantise

    generator = torch.Generator().manual_seed(3)
    parts = [torch.randn(48, 32, generator=generator) * scale for scale in (0.02, 1.0, 40.0)]
    stacked = quantise(torch.cat(parts))
    scratch = Scratch()
    quantise(torch.randn(200, 32, generator=generator).half() * 900, scratch=scratch)
    apart = quantise(*parts, scratch=scratch)
    assert torch.equal(apart.ints, stacked.ints) and torch.equal(apart.scales, stacked.scales)
    # and they are the integers of round(kernel / scale), scale = max |row| / 127
    scales = torch.cat(parts).abs().amax(dim=1) / 127
    expected = torch.round(torch.cat(parts) / scales[:, None]).to(torch.int8)
    assert torch.equal(apart.scales, scales) and torch.equal(apart.ints, expected)
