"""CTranslate2 int8 beside our int8, on the same random weights (for benchmarks/model_bench.py --ct2).

CTranslate2 has no Blenderbot loader. Blenderbot is a BART with pre-LayerNorm layers, a final
LayerNorm after each stack, no LayerNorm on the embeddings and learned positions without BART's
offset of 2, so BART's loader converts it once told so; it lives here, in the benchmark, not in
the product. CTranslate2 has no encoder_no_repeat_ngram_size, so the beam row here leaves it out
on both sides.

CTranslate2 runs in a child process of its own. In the benchmark's process, once CTranslate2 had
run, our small parallel ops (layer norm, the cache gather) took 4-8x longer for the rest of the
process (beam 10 x 60: 2.79 s before its first call, 4.31 s after; CTranslate2 brings its own
copy of the OpenMP runtime), so sharing a process measured the interaction, not either engine.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
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


class Engine:
    """A CTranslate2 translator in a child process; each call returns once the child has answered."""

    def __init__(self, folder: Path, out: Path, compute_type: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, folder, out, compute_type, torch.get_num_threads()), daemon=True
        )
        self._process.start()
        self.version = str(self._conn.recv())

    def _call(self, *request: Any) -> Any:
        self._conn.send(request)
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def translate(self, sources: list[list[str]], options: dict[str, Any]) -> float:
        """Seconds CTranslate2 took for ``translate_batch`` (timed in the child)."""
        return float(self._call("translate", sources, options))

    def score(self, source: list[str], target: list[str]) -> list[float]:
        return list(self._call("score", source, target))

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(timeout=30)


def _serve(conn: Connection, folder: Path, out: Path, compute_type: str, threads: int) -> None:
    torch.set_num_threads(threads)
    engine = translator(folder, out, compute_type)
    conn.send(_version())
    while (request := conn.recv()) is not None:
        try:
            if request[0] == "translate":
                started = time.perf_counter()
                engine.translate_batch(request[1], **request[2])
                conn.send(time.perf_counter() - started)
            else:
                conn.send(engine.score_batch([request[1]], [request[2]])[0].log_probs)
        except Exception as error:  # handed to the parent, which raises it
            conn.send(error)


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
    source = list(tokenizer.convert_ids_to_tokens(ids))
    if ours_fp32 is not None:
        target = torch.randint(10, 8000, (15,), generator=torch.Generator().manual_seed(0)).tolist()
        checker = Engine(folder, out, "float32")
        scored = checker.score(source, list(tokenizer.convert_ids_to_tokens(target)))
        checker.close()
        decoder = [[ours_fp32.config.decoder_start_token_id, *target]]
        logprobs = torch.log_softmax(torch.as_tensor(ours_fp32.logits([ids], decoder)), -1)[0]
        picked = [float(logprobs[i, t]) for i, t in enumerate([*target, ours.tokenizer.eos_id])]
        worst = max(abs(a - b) for a, b in zip(scored, picked, strict=True))
        print(
            f"# conversion check: float32 log-probs of 16 tokens, CTranslate2 vs ours, max diff {worst:.1e}"
        )
    engine = Engine(folder, out, "int8")
    print(
        f"# CTranslate2 {engine.version}, compute_type int8, {torch.get_num_threads()} threads, "
        "in a child process (calls alternate with ours)",
        flush=True,
    )
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
            return engine.translate([source] * n, k)

        a, b = side_by_side(mine, theirs, repeats)
        row(f"[int8 vs ct2 int8] {name} (s)", a, b, "ratio = ours / CTranslate2")
    engine.close()


def _version() -> str:
    import ctranslate2

    return str(ctranslate2.__version__)
