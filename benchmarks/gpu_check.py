"""The model on a GPU: float16/bfloat16 against float32, and the 400M shape's speed (#12 point 7).

    python benchmarks/gpu_check.py                      # a CUDA GPU: a few minutes
    python benchmarks/gpu_check.py --device cpu --dtypes bfloat16 --quick   # checks the script

**Parity**, on the tiny random checkpoints of both architectures (``tests.checkpoints``): the
reference is our float32 model on the CPU, which ``tests/test_model_parity.py`` holds to
transformers (for BlenderbotSmall, to transformers 4.x and ParlAI: the decoder embeddings are
scaled). For each half-precision dtype on ``--device``:

* teacher-forced logits along the reference's greedy path: the largest difference, relative to
  the largest logit, must be within ``TOLERANCE`` (float16 has 11 significant bits, bfloat16 8;
  the bounds allow a few roundings per layer);
* greedy output (``--tokens`` tokens) token for token, where the margins allow: an input may
  diverge only at a step where float32's two best tokens are closer than twice the largest logit
  difference seen (there half precision may pick either). A divergence anywhere else fails.

**Speed**, on the full 400M-distill shape (random weights; with the real vocabulary when
``../shared/realfiles`` is there), ours against transformers on the same device and dtype,
alternating, medians: a beam-10 reply of 20 tokens for one conversation (the latency a person
sees; target 100 ms on an H100), and 64 conversations in one batch (greedy and beam 10, 20 tokens
each: replies per second). Peak GPU memory of each.

Exit status 1 when a parity check fails. The device's name, torch and CUDA versions head the
output; paste it into docs/benchmarks.md.

On the lent GPU machine (the ``device`` tool: Python 3.12 with torch, transformers, tokenizers,
safetensors, but no Keras) carry Keras' wheels, fetched here (checked 2026-12-07: keras 3.15.1,
namex 0.1.0, optree 0.16.0, 2.8 MB)::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl keras namex optree
    # run with carry [".whl"]:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
        PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py | tee $OUT/gpu.txt
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import torch

import model
from model import GenerationSettings
from tests.checkpoints import CORPUS, build_blenderbot, build_blenderbot_small

# The largest logit difference allowed, relative to the largest logit of float32.
TOLERANCE = {"float16": 0.01, "bfloat16": 0.05}
TEXTS = [*CORPUS, "pizza", "Do you like music?", "I have two cats and a dog.", "Where do you work?"]


@dataclass
class Parity:
    """One dtype against float32 on one checkpoint."""

    relative_error: float  # max |logit - float32's| / max |float32's logit|
    identical: int  # inputs whose greedy output is float32's, token for token
    close_calls: int  # inputs that diverged where float32's two best tokens were within the error
    wrong: int  # inputs that diverged where the margin was wider: a failure

    def passed(self, dtype: str) -> bool:
        return self.relative_error <= TOLERANCE[dtype] and self.wrong == 0


def teacher_forced(m: model.Blenderbot, ids: list[int], path: list[int]) -> np.ndarray:
    """Logits ``[len(path), vocab]`` (float32) for ``path`` given ``ids``."""
    return np.asarray(m.logits([ids], [path]), dtype=np.float32)[0]


def parity(reference: model.Blenderbot, half: model.Blenderbot, tokens: int) -> Parity:
    settings = GenerationSettings(num_beams=1, max_length=tokens + 1)
    start = reference.config.decoder_start_token_id
    inputs = [reference.tokenizer.encode(text) for text in TEXTS]
    ours = reference.generate(inputs, settings)
    theirs = half.generate(inputs, settings)
    error, scale = 0.0, 0.0
    margins: list[np.ndarray] = []
    for ids, hyps in zip(inputs, ours, strict=True):
        path = [start, *hyps[0].tokens]
        want = teacher_forced(reference, ids, path)
        got = teacher_forced(half, ids, path)
        error = max(error, float(np.abs(got - want).max()))
        scale = max(scale, float(np.abs(want).max()))
        top2 = np.sort(want, axis=-1)[:, -2:]
        margins.append(top2[:, 1] - top2[:, 0])  # per step: best minus second best
    identical = close = wrong = 0
    for margin, a, b in zip(margins, ours, theirs, strict=True):
        x, y = a[0].tokens, b[0].tokens
        if x == y:
            identical += 1
            continue
        step = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
        if step < len(margin) and margin[step] <= 2 * error:
            close += 1
        else:
            wrong += 1
    return Parity(error / scale, identical, close, wrong)


def synced(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def side_by_side(
    ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int, sync: Callable[[], None]
) -> tuple[float, float]:
    """Medians of ``repeats`` alternating timed calls of each, after one warm-up of each."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats + 1):
        for fn, into in ((ours, times[0]), (theirs, times[1])):
            sync()
            started = time.perf_counter()
            fn()
            sync()
            if i:
                into.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def speed(folder: Path, device: str, dtype: str, repeats: int) -> None:
    from transformers import BlenderbotForConditionalGeneration

    sync = synced(device)
    ours = model.load(folder, device=device, dtype=dtype)
    hf = BlenderbotForConditionalGeneration.from_pretrained(
        str(folder), dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    hf = hf.eval().to(device)
    context = list(range(10, 70))  # a 60-token conversation
    kinds: dict[str, dict[str, Any]] = {
        "beam 10": {"num_beams": 10, "length_penalty": 0.65, "no_repeat_ngram_size": 3},
        "greedy": {"num_beams": 1},
    }

    def ours_fn(batch: int, kind: dict[str, Any]) -> Callable[[], Any]:
        settings = GenerationSettings(min_length=21, max_length=21, **kind)  # 20 tokens after the start
        return lambda: ours.generate([context] * batch, settings)

    def hf_fn(batch: int, kind: dict[str, Any]) -> Callable[[], Any]:
        ids = torch.tensor([context] * batch, device=device)
        kw = {"do_sample": False, "early_stopping": False, "min_length": 21, "max_length": 21, **kind}
        return lambda: hf.generate(ids, **kw)

    print(f"{'[' + dtype + '] row':44s} {'ours':>9s} {'hf':>9s} {'ratio':>6s}  note", flush=True)
    for batch, name in ((1, "beam 10"), (64, "greedy"), (64, "beam 10")):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        a, b = side_by_side(ours_fn(batch, kinds[name]), hf_fn(batch, kinds[name]), repeats, sync)
        peak = (
            f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            if device != "cpu"
            else ""
        )
        note = (
            f"{batch / a:.1f} vs {batch / b:.1f} replies/s{peak}" if batch > 1 else f"{a * 1000:.0f} ms{peak}"
        )
        print(
            f"{f'[{dtype}] {name}, 20 tokens, batch {batch} (s)':44s} {a:9.3f} {b:9.3f} {a / b:6.2f}  {note}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="auto,float16,bfloat16", help="auto: what model.dtype auto picks")
    parser.add_argument("--tokens", type=int, default=20, help="greedy tokens compared for parity")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smaller model for the speed rows")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from benchmarks.model_bench import FULL, QUICK, with_real_tokenizer
    from model.devices import pick_device, pick_dtype

    device = pick_device(args.device)
    dtypes = list(dict.fromkeys(pick_dtype(d, device) for d in args.dtypes.split(",")))
    if unknown := [d for d in dtypes if d not in TOLERANCE]:
        parser.error(f"--dtypes: {', '.join(unknown)} is not a half-precision dtype (float16, bfloat16)")
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        print(f"# device: {props.name}, {props.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}")
    print(f"# torch {torch.__version__}; model.dtype auto on {device} = {pick_dtype('auto', device)}")
    tmp = Path(tempfile.mkdtemp())
    failed = False
    for name, build in (("blenderbot", build_blenderbot), ("blenderbot_small", build_blenderbot_small)):
        folder = build(tmp / name)
        reference = model.load(folder, device="cpu", dtype="float32")
        for dtype in dtypes:
            result = parity(reference, model.load(folder, device=device, dtype=dtype), args.tokens)
            ok = result.passed(dtype)
            failed |= not ok
            print(
                f"[parity] {name} {dtype} on {device}: logits max |diff| {result.relative_error:.4f} of the "
                f"largest (bound {TOLERANCE[dtype]}); greedy {args.tokens} tokens: {result.identical}/"
                f"{len(TEXTS)} identical, {result.close_calls} diverged where float32's two best were "
                f"within the error, {result.wrong} elsewhere: {'ok' if ok else 'FAILED'}",
                flush=True,
            )
    folder = with_real_tokenizer(build_blenderbot(tmp / "400m", shape=QUICK if args.quick else FULL))
    print(f"# {'quick' if args.quick else '400M-distill'} shape, 60-token context, {args.repeats} repeats")
    for dtype in dtypes:
        speed(folder, device, dtype, args.repeats)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the last dtype's models are gone: so is their memory
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
