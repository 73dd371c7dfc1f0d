"""Side-by-side benchmark: the Keras port against transformers on the full 400M-distill shape.

Random weights (timing does not depend on weight values), saved once with save_pretrained and
loaded by both, in one process. Each row alternates the two implementations ``--repeats`` times
and reports medians; ratio = ours / transformers time (lower is better, <= 1.00 is the target).

    python benchmarks/model_bench.py [--repeats 3] [--dtypes float32,int8] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import model
from tests.checkpoints import build_blenderbot

FULL: dict[str, Any] = {  # facebook/blenderbot-400M-distill
    "vocab_size": 8008,
    "d_model": 1280,
    "encoder_layers": 2,
    "decoder_layers": 12,
    "encoder_attention_heads": 32,
    "decoder_attention_heads": 32,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "max_position_embeddings": 128,
}
QUICK: dict[str, Any] = {
    **FULL,
    "d_model": 320,
    "encoder_ffn_dim": 1280,
    "decoder_ffn_dim": 1280,
    "decoder_layers": 4,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
}


class PeakRSS:
    """Sample this process's resident memory every millisecond while the block runs."""

    def __enter__(self) -> PeakRSS:
        _trim()  # hand freed heap back to the OS, so neither side inherits the other's free pages
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def grew_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _trim() -> None:
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the numbers are then less exact
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> tuple[float, float]:
    ours()  # warm up both
    theirs()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(theirs))
    return statistics.median(a), statistics.median(b)


def _linears(m: model.Blenderbot) -> list[Any]:
    b = m.backbone
    return [lin for e in b.encoder_layers for lin in e.linears()] + [
        lin for d in b.decoder_layers for lin in d.linears()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dtypes", default="float32,int8", help="our dtypes to compare (float32,bfloat16,int8)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smaller model, to check the script runs")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from transformers import BlenderbotForConditionalGeneration

    shape = QUICK if args.quick else FULL
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_blenderbot(Path(tmp) / "ck", shape=shape)
        hf = BlenderbotForConditionalGeneration.from_pretrained(str(folder), attn_implementation="sdpa")
        hf = hf.eval().to(device)
        ours_by_dtype = {d: model.load(folder, device=args.device, dtype=d) for d in args.dtypes.split(",")}
    print(
        f"# {'400M-distill shape' if not args.quick else 'quick shape'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}, repeats {args.repeats}"
    )
    print(f"{'row':44s} {'ours':>9s} {'hf fp32':>9s} {'ratio':>6s}  note")
    context = list(range(10, 10 + 60))  # a 60-token conversation

    def hf_generate(batch: int, **kw: Any) -> Callable[[], Any]:
        ids = torch.tensor([context] * batch, device=device)
        kw = {
            "do_sample": False,
            "no_repeat_ngram_size": 0,
            "encoder_no_repeat_ngram_size": 0,
            "length_penalty": 1.0,
            "early_stopping": False,
            **kw,
        }
        return lambda: hf.generate(ids, **kw)

    def our_generate(m: model.Blenderbot, batch: int, use_cache: bool = True, **kw: Any) -> Callable[[], Any]:
        settings = model.GenerationSettings(**kw)
        return lambda: m.generate([context] * batch, settings, use_cache=use_cache)

    def row(name: str, a: float, b: float, note: str = "") -> None:
        print(f"{name:44s} {a:9.3f} {b:9.3f} {a / b:6.2f}  {note}", flush=True)

    greedy32: dict[str, Any] = {"num_beams": 1, "max_length": 33, "min_length": 33}
    beam60: dict[str, Any] = {
        "num_beams": 10,
        "max_length": 60,
        "min_length": 60,
        "length_penalty": 0.65,
        "no_repeat_ngram_size": 3,
        "encoder_no_repeat_ngram_size": 3,
    }
    for dtype, m in ours_by_dtype.items():
        a, b = side_by_side(our_generate(m, 1, **greedy32), hf_generate(1, **greedy32), args.repeats)
        row(
            f"[{dtype}] greedy 32 tokens, batch 1 (s)",
            a,
            b,
            f"{a / 32 * 1e3:.1f} vs {b / 32 * 1e3:.1f} ms/token",
        )
        a, b = side_by_side(our_generate(m, 1, **beam60), hf_generate(1, **beam60), max(1, args.repeats - 1))
        row(f"[{dtype}] beam 10, full 60 tokens (s)", a, b)
        for batch in (1, 4, 8, 16):
            a, b = side_by_side(
                our_generate(m, batch, **greedy32), hf_generate(batch, **greedy32), args.repeats
            )
            row(
                f"[{dtype}] greedy batch {batch:2d} (s per batch)",
                a,
                b,
                f"{batch / a:.2f} vs {batch / b:.2f} replies/s, {b / a:.2f}x throughput",
            )
        a, b = side_by_side(
            our_generate(m, 1, use_cache=False, **greedy32), hf_generate(1, use_cache=False, **greedy32), 1
        )
        row(f"[{dtype}] cache off, greedy 32, batch 1 (s)", a, b)
        on = timed(our_generate(m, 1, **greedy32))
        print(f"{'':44s} ours cache on/off: {on / a:.2f} (cached is {a / on:.1f}x faster)")
        with PeakRSS() as theirs:  # transformers first, then ours, both after a heap trim
            hf_generate(1, **beam60)()
        with PeakRSS() as mine:
            our_generate(m, 1, **beam60)()
        weights = sum(v.numpy().nbytes for v in m.backbone.weights) / 2**20
        if dtype == "int8":  # the packed int8 kernels come on top of the float32 variables
            weights += sum(lin.in_features * lin.out_features for lin in _linears(m)) / 2**20
        hf_weights = sum(p.numel() * p.element_size() for p in hf.parameters()) / 2**20
        row(
            f"[{dtype}] peak RSS growth, beam 10 x 60 (MiB)",
            mine.grew_mb,
            max(theirs.grew_mb, 1e-9),
            f"weights {weights:.0f} MiB vs {hf_weights:.0f} MiB",
        )


if __name__ == "__main__":
    main()
