"""Side-by-side benchmark: the Keras port against transformers on the full 400M-distill shape.

Random weights (timing does not depend on weight values), saved once with save_pretrained and
loaded by both, in one process. Each row alternates the two implementations ``--repeats`` times
and reports medians; ratio = ours / transformers time (lower is better, <= 1.00 is the target).

    python benchmarks/model_bench.py [--repeats 3] [--dtypes float32,int8] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import model
from benchmarks.machine import cpu_flags, proc_status_mib
from tests.checkpoints import DETOXIFY_ORIGINAL, REAL_400M, build_blenderbot, build_detoxify

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
    "init_std": 0.02,  # transformers' initialisation: weight magnitudes like a trained model's, not 0.3
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
    import gc

    from model.heap import release_freed_memory

    gc.collect()
    release_freed_memory()  # not glibc: nothing, and the numbers are then less exact


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
    parser.add_argument("--quality", type=int, default=8, help="contexts for the int8 vs float32 comparison")
    parser.add_argument(
        "--no-timing", action="store_true", help="only memory, int8 quality and cold starts (no speed rows)"
    )
    parser.add_argument(
        "--ct2",
        action="store_true",
        help="also time CTranslate2 int8 against our int8 (pip install .[bench])",
    )
    parser.add_argument(
        "--ct2-only",
        action="store_true",
        help="only the CTranslate2 int8 rows (int8 model; implies --ct2)",
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold starts of --dtypes (a few minutes)"
    )
    parser.add_argument(
        "--cold-repeats", type=int, default=3, help="cold starts of each kind (first, later): medians"
    )
    parser.add_argument(
        "--cold-classifier",
        action="store_true",
        help="cold starts also with the safety classifier on: random weights of Detoxify "
        "'original' (bert-base-uncased, 6 labels) from local files (a 30,522-entry vocabulary "
        "trained on chitchat-dataset)",
    )
    parser.add_argument(
        "--cold-python",
        action="append",
        help="the Python of another environment for the cold starts, e.g. a plain `pip install .` "
        "(the dev extras add scikit-learn, which keras imports when it is there: about 0.8 s); "
        "repeat it to compare versions side by side (default: this Python)",
    )
    args = parser.parse_args()
    if args.ct2_only:
        args.ct2, args.dtypes = True, "int8"
    torch.set_grad_enabled(False)
    from transformers import BlenderbotForConditionalGeneration

    shape = QUICK if args.quick else FULL
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp())
    folder = with_real_tokenizer(build_blenderbot(tmp / "ck", shape=shape))
    if args.cold_only:
        print(f"# {'400M-distill shape' if not args.quick else 'quick shape'}, torch {torch.__version__}")
        print(f"# cpu: {cpu_flags()}")
        cold_starts(args, folder, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    hf = BlenderbotForConditionalGeneration.from_pretrained(str(folder), attn_implementation="sdpa")
    hf = hf.eval().to(device)
    ours_by_dtype = {d: model.load(folder, device=args.device, dtype=d) for d in args.dtypes.split(",")}
    print(
        f"# {'400M-distill shape' if not args.quick else 'quick shape'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}, repeats {args.repeats}"
    )
    print(f"# cpu: {cpu_flags()}")
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
        if args.ct2_only:
            break
        if args.no_timing:
            row(f"[{dtype}] weights held (MiB)", resident_weights(m) / 2**20, _param_bytes(hf) / 2**20)
            continue
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
        weights = resident_weights(m) / 2**20
        hf_weights = _param_bytes(hf) / 2**20
        row(
            f"[{dtype}] peak RSS growth, beam 10 x 60 (MiB)",
            mine.grew_mb,
            max(theirs.grew_mb, 1e-9),
            f"weights {weights:.0f} MiB vs {hf_weights:.0f} MiB",
        )

    if args.ct2 and "int8" in ours_by_dtype:
        from benchmarks.ctranslate2_blenderbot import compare

        compare(
            ours_by_dtype["int8"],
            ours_by_dtype.get("float32"),
            folder,
            tmp / "ct2",
            args.repeats,
            side_by_side,
            row,
        )
    if args.ct2_only:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if "int8" in ours_by_dtype and "float32" in ours_by_dtype:
        quality(ours_by_dtype["float32"], ours_by_dtype["int8"], beam60, args.quality)
    cold_starts(args, folder, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def with_real_tokenizer(folder: Path) -> Path:
    """Give the random checkpoint 400M-distill's real vocabulary (8008 tokens), when the files are there."""
    if not (REAL_400M / "vocab.json").exists():
        return folder
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(REAL_400M / name, folder / name)
    return folder


def _param_bytes(net: Any) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def resident_weights(m: model.Blenderbot) -> int:
    """Bytes of weights held: float tensors (a released int8 kernel holds none) plus packed int8 kernels."""
    floats = sum(v.value.numel() * v.value.element_size() for v in m.backbone.weights)
    return floats + m.backbone.int8_bytes


def quality(fp32: model.Blenderbot, int8: model.Blenderbot, beam: dict[str, Any], count: int) -> None:
    """How often int8's beam-10 reply equals float32's, and how far its log-probabilities are from
    float32's on float32's own reply (teacher-forced), over ``count`` random 60-token contexts."""
    generator = torch.Generator().manual_seed(0)
    vocab = fp32.config.vocab_size
    contexts = [torch.randint(10, vocab, (60,), generator=generator).tolist() for _ in range(count)]
    settings = model.GenerationSettings(**beam)
    same, worst, mean = 0, 0.0, []
    for context in contexts:
        a = fp32.generate([context], settings)[0][0].tokens
        b = int8.generate([context], settings)[0][0].tokens
        same += list(a) == list(b)
        decoder = [[fp32.config.decoder_start_token_id, *a[:-1]]]
        la = torch.log_softmax(torch.as_tensor(fp32.logits([context], decoder)), -1)
        lb = torch.log_softmax(torch.as_tensor(int8.logits([context], decoder)), -1)
        picked = torch.as_tensor(a).view(1, -1, 1)
        diff = (la.gather(-1, picked) - lb.gather(-1, picked)).abs()
        worst = max(worst, float(diff.max()))
        mean.append(float(diff.mean()))
    print(
        f"[int8 vs float32] beam 10 x 60 on {count} random contexts: {same}/{count} replies identical; "
        f"log-prob of float32's reply tokens differs by {statistics.mean(mean):.3f} on average, "
        f"{worst:.3f} at most (random weights)",
        flush=True,
    )


def chat_resident(pid: int, int8_cache: Path | None) -> str:
    """The resident size of a running chat, read from /proc once its start is over: for int8, once
    the kernel cache it writes on a first start is there (then a moment for the writer to let its
    int8 values go)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return "RSS unknown (no /proc)"
    if int8_cache is not None:
        deadline = time.monotonic() + 60
        while not list(int8_cache.glob("*.safetensors")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    mib = proc_status_mib(pid, ("VmRSS", "VmHWM", "RssFile"))
    return (
        f"RSS {mib['VmRSS']:.0f} MiB ({mib['RssFile']:.0f} of it mapped files), peak {mib['VmHWM']:.0f} MiB"
    )


def start_chat(
    python: str, config: Path, tmp: Path, *, resident: bool, int8_cache: Path | None
) -> tuple[float, float, str | None] | str:
    """One `python -m bot chat --config config`, one message: seconds to the reply's line and to
    the exit, and (``resident``) the chat's resident size once its start is over (for int8 once
    ``int8_cache`` is written: :func:`chat_resident`); or why it failed."""
    import subprocess

    started = time.perf_counter()
    chat = subprocess.Popen(
        [python, "-m", "bot", "chat", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
    )
    assert chat.stdin is not None and chat.stdout is not None  # both are pipes
    chat.stdin.write("Hello, how are you today?\n")
    chat.stdin.flush()
    reply = chat.stdout.readline()
    first_reply = time.perf_counter() - started
    rss = chat_resident(chat.pid, int8_cache) if resident else None
    _, errors = chat.communicate("")  # end of input: the chat exits
    exited = time.perf_counter() - started
    if chat.returncode != 0 or not reply.strip():
        return f"exit {chat.returncode}: {errors[-300:]}"
    return first_reply, exited, rss


def cold_starts(args: argparse.Namespace, folder: Path, tmp: Path) -> None:
    """The cold starts of every dtype asked for: with the classifier off, then (--cold-classifier)
    on, with random weights of its default model's size."""
    classifier = detoxify_original(tmp / "detoxify") if args.cold_classifier else None
    for dtype in args.dtypes.split(","):
        for files in (None, classifier) if classifier else (None,):
            cold_start(folder, dtype, tmp, args.cold_python or [sys.executable], args.cold_repeats, files)


def detoxify_original(folder: Path) -> tuple[Path, Path]:
    """Random weights in the shape of Detoxify's default model ("original": bert-base-uncased, 6
    labels) with a full-size vocabulary: (checkpoint, config folder), as ``safety.classifier``'s
    offline settings take them. Timing does not depend on the weights."""
    import chitchat_dataset

    data = chitchat_dataset.Dataset()
    texts = [m["text"] for key in data for turn in data[key]["messages"] for m in turn]
    return build_detoxify(folder, steps=0, shape=DETOXIFY_ORIGINAL, texts=texts)


def cold_start(
    folder: Path,
    dtype: str,
    tmp: Path,
    pythons: Sequence[str] = (sys.executable,),
    repeats: int = 3,
    classifier: tuple[Path, Path] | None = None,
) -> None:
    """`python -m bot chat` from nothing to its first reply (the line on stdout), and the model's
    process RSS after load. ``pythons`` are the environments to compare (a plain ``pip install
    .`` of each version), one after the other within every round, so that a shared VM's changes
    of speed fall on all of them alike.

    Twice from one data_dir, ``repeats`` times (a new data_dir each time): the first start creates
    the database and, for int8, writes the kernel cache (``data_dir/int8``); the second is every
    later start. Medians, with the range. The chat's own resident size after its first reply (the
    first round), as a user's process has it.

    ``classifier`` (checkpoint, config folder): the safety classifier on, from those files (the
    first start also writes its offline copy into data_dir/safety); else off."""
    import subprocess

    if classifier is None:
        safety = "safety: {classifier: {enabled: false}}\n"
        what = "classifier off"
    else:
        safety = f"safety: {{classifier: {{checkpoint: {classifier[0]}, config_folder: {classifier[1]}}}}}\n"
        what = "classifier on: Detoxify original's size"

    kinds = ("first start", "later start")
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(p, k): [] for p in pythons for k in kinds}
    resident: dict[tuple[str, str], str] = {}
    for repeat in range(repeats):
        for number, python in enumerate(pythons):
            data = tmp / f"data-{dtype}-{repeat}-{number}"
            config = tmp / f"cold-{dtype}.yaml"
            config.write_text(
                f"data_dir: {data}\n"
                f"model: {{source: {folder}, device: cpu, dtype: {dtype}, "
                "generation: {num_beams: 10, max_length: 20}}\n" + safety
            )
            for kind in kinds:
                cache = data / "int8" if dtype == "int8" else None
                outcome = start_chat(python, config, tmp, resident=repeat == 0, int8_cache=cache)
                if isinstance(outcome, str):
                    print(f"[{dtype}] {python}: {kind} failed: {outcome}")
                    return
                first_reply, exited, rss = outcome
                times[python, kind].append((first_reply, exited))
                if rss is not None:
                    resident[python, kind] = rss
            shutil.rmtree(data, ignore_errors=True)
    for python in pythons:
        label = "" if len(pythons) == 1 else f" {python}"
        for kind in kinds:
            runs = times[python, kind]
            replies = [r for r, _ in runs]
            print(
                f"[{dtype}]{label} cold start to the first reply (python -m bot chat, beam 10 x 20, "
                f"{what}), {kind}: median {statistics.median(replies):.2f} s (min {min(replies):.2f}, "
                f"max {max(replies):.2f}; {len(runs)} runs), exited at "
                f"{statistics.median(e for _, e in runs):.2f} s; the chat's process after its reply: "
                f"{resident[python, kind]}",
                flush=True,
            )
    for python in pythons if classifier is None else ():  # the model alone
        probe = subprocess.run(
            [
                python,
                "-c",
                "import model, resource; "
                f"m = model.load({str(folder)!r}, device='cpu', dtype={dtype!r}); "
                "print(int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize())",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=False,
        )
        mib = int(probe.stdout.split()[-1]) / 2**20 if probe.returncode == 0 else float("nan")
        label = "" if len(pythons) == 1 else f" {python}"
        print(f"[{dtype}]{label} process RSS after load: {mib:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
