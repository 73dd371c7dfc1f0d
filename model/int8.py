"""Int8 kernels for CPU inference, packed from plain tensors (torch only, no Keras).

Symmetric per-output-channel int8 kernels run through ``torch.ops.quantized.linear_dynamic``,
which quantises each activation on the fly: 4-6x faster than float32 matmuls on AVX2 CPUs without
bfloat16 units, and a quarter of the memory. Kernels are packed for fbgemm, the faster engine at
the few rows of a decoding step; on CPUs with AMX int8 tiles, the kernels that read whole
sequences (the encoder, cross-attention keys and values) are packed for oneDNN (see
:func:`sequence_engine`).

Which projections become which kernel is :func:`kernel_groups`: the projections that read the
same input are one kernel (q, k, v of self-attention; k, v of cross-attention), so one activation
quantisation and one GEMM replace three or two. The groups are keyed by the model's own names
(``decoder.3.self_attn.qkv``), and :func:`pack_groups` reads each part from a ``source``: the
checkpoint's tensors (:class:`Packing`, at load) or a built backbone's variables
(``BlenderbotBackbone.quantize_int8``). Packing needs no Keras, so :func:`model.load` starts it in
a thread while Keras is imported and the backbone built (Python code, on one core: the GIL).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.config import BlenderbotConfig
from model.errors import ModelError
from model.heap import release_freed_memory

if TYPE_CHECKING:
    from model.int8_cache import KernelCache

logger = logging.getLogger(__name__)

# The quantized-tensor API is deprecated but still the path to fbgemm's and oneDNN's int8 kernels.
# One filter for that one message, set once: warnings.catch_warnings() is not thread-safe, and
# kernels are packed in several threads.
warnings.filterwarnings(
    "ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel", category=UserWarning
)

# (kernel [out, in], bias [out] or None) of a projection, by its name in kernel_groups
Source = Callable[[str], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class Int8Weight:
    """A packed int8 kernel (symmetric, per output channel; bias float32) and the engine it was
    packed for, which says how its activations are quantised: fbgemm's with ``reduce_range`` (7
    bits, so AVX2's 16-bit accumulation cannot saturate), oneDNN's with all 8."""

    packed: Any  # the engine's packed weight for torch.ops.quantized.linear_dynamic
    engine: str  # torch.backends.quantized.engine when it was packed

    @property
    def reduce_range(self) -> bool:
        return self.engine != "onednn"


@functools.cache
def sequence_engine() -> str | None:
    """``"onednn"`` where the CPU has AMX int8 tiles and torch has oneDNN, else None (fbgemm).

    Measured on such a CPU (Xeon, 2 cores), one int8 linear over 61-976 rows: oneDNN 1.3-4x faster
    than fbgemm; over 1-10 rows fbgemm is 1.2-1.7x faster, so the decoder's per-step kernels stay
    with fbgemm.
    """
    if "onednn" not in torch.backends.quantized.supported_engines:
        return None
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:  # not Linux: fbgemm everywhere
        return None
    return "onednn" if " amx_int8" in info else None


@contextmanager
def packing_engine(engine: str) -> Iterator[None]:
    """Pack with ``engine`` inside the block. The engine is a process-wide torch setting: only one
    block may be open at a time, and nothing else may pack meanwhile."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


@dataclass(frozen=True)
class Quantised:
    """A kernel's int8 values ``[out, in]`` and per-output-channel scales ``[out]`` (float32):
    ``kernel ~= ints * scales[:, None]``. What :class:`model.int8_cache.KernelCache` stores."""

    ints: torch.Tensor
    scales: torch.Tensor


class Scratch:
    """A float32 buffer that the :func:`quantise` calls of one thread share, grown to the largest
    kernel. Fresh memory costs a page fault per 4 KiB: quantising 400M-distill's 1.5 GB of float32
    kernels into new temporaries took 0.8 s of system time (2 threads, 0.77 s), into one buffer per
    thread 0.25 s (0.50 s)."""

    def __init__(self) -> None:
        self._buffer = torch.empty(0)

    def take(self, rows: int, columns: int) -> torch.Tensor:
        """``[rows, columns]`` of the buffer (its values left over from the last use)."""
        if self._buffer.numel() < rows * columns:
            self._buffer = torch.empty(rows * columns)
        return self._buffer[: rows * columns].view(rows, columns)


@torch.no_grad()
def quantise(*kernels: torch.Tensor, scratch: Scratch | None = None) -> Quantised:
    """Symmetric per-output-channel int8 of ``kernels: [out_i, in]`` (any float dtype), stacked on
    their output rows: what quantising the stacked kernel gives, without the stacked float copy
    (per row, so each part is quantised into its own rows). ``scratch``: the float32 temporary to
    reuse (a new one without)."""
    if not kernels:
        raise ValueError("quantise needs at least one kernel")
    scratch = scratch or Scratch()
    columns = kernels[0].shape[1]
    ints = torch.empty((sum(k.shape[0] for k in kernels), columns), dtype=torch.int8)
    scales = torch.empty(ints.shape[0])
    start = 0
    for kernel in kernels:
        if kernel.dtype != torch.float32 or kernel.device.type != "cpu":
            kernel = kernel.to("cpu", torch.float32)
        rows = kernel.shape[0]
        part, work = scales[start : start + rows], scratch.take(rows, columns)
        torch.amax(torch.abs(kernel, out=work), dim=1, out=part).div_(127.0).clamp_(min=1e-12)
        # round(kernel / scale) by hand: half the time of torch.quantize_per_channel (0.23 vs
        # 0.45 s for 52M weights on one core), the same integers but for ~1 in 2 million (a tie
        # rounded the other way)
        torch.div(kernel, part[:, None], out=work).round_().clamp_(-127, 127)
        ints[start : start + rows].copy_(work)
        start += rows
    return Quantised(ints, scales)


def pack_quantised(kernel: Quantised, bias: torch.Tensor | None) -> Int8Weight:
    """An int8 weight for the current engine (fbgemm unless inside :func:`packing_engine`); ``bias``
    stays float32.

    Few torch calls on purpose: each gives up the GIL and must take it back, which, while another
    thread runs Python code (importing Keras), takes up to ``sys.getswitchinterval()`` (see
    :func:`short_switch_interval`)."""
    rows = kernel.ints.shape[0]
    q = torch._make_per_channel_quantized_tensor(kernel.ints, kernel.scales.double(), _zeros(rows), 0)
    if bias is not None and (bias.dtype != torch.float32 or bias.device.type != "cpu"):
        bias = bias.to("cpu", torch.float32)
    packed = torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach())
    return Int8Weight(packed, engine=torch.backends.quantized.engine)


def pack_int8(kernel: torch.Tensor, bias: torch.Tensor | None) -> Int8Weight:
    """``kernel: [out, in]`` -> :func:`quantise`, then :func:`pack_quantised`."""
    return pack_quantised(quantise(kernel), bias)


@functools.lru_cache(maxsize=16)
def _zeros(rows: int) -> torch.Tensor:
    """Per-channel zero points (symmetric quantisation), shared by kernels with as many rows."""
    return torch.zeros(rows, dtype=torch.long)


def linear_int8(x: torch.Tensor, weight: Int8Weight) -> torch.Tensor:
    """``x: [..., in]`` float32 through a :func:`pack_int8` weight -> ``[..., out]`` float32."""
    return torch.ops.quantized.linear_dynamic(x, weight.packed, weight.reduce_range)


def packed_bytes(weight: Int8Weight | None) -> int:
    """Bytes a :func:`pack_int8` weight holds (0 for None): its int8 kernel, twice for oneDNN,
    which keeps the kernel it was given (for unpacking) beside its own packed copy (measured: 1.9
    bytes per weight held)."""
    if weight is None:
        return 0
    kernel, _ = torch.ops.quantized.linear_unpack(weight.packed)
    return int(kernel.numel()) * (2 if weight.engine == "onednn" else 1)


@dataclass(frozen=True)
class KernelGroup:
    """One int8 kernel: the projections ``parts`` stacked on their output rows (biases likewise,
    zeros where a part has none). ``sequence``: it reads whole sequences (packed for
    :func:`sequence_engine`); otherwise it runs at every decoding step."""

    key: str
    parts: tuple[str, ...]
    sequence: bool


def kernel_groups(config: BlenderbotConfig) -> list[KernelGroup]:
    """Every int8 kernel of the network. Names: ``{stack}.{i}.{attention}.{projection}``,
    ``{stack}.{i}.ffn.fc1``, ``lm_head`` (the shared embedding and ``final_logits_bias``)."""

    def attention(prefix: str, *, cross: bool, sequence: bool) -> list[KernelGroup]:
        if cross:  # keys and values read the encoder output once per generate call; queries each step
            return [
                KernelGroup(f"{prefix}.kv", (f"{prefix}.k_proj", f"{prefix}.v_proj"), True),
                KernelGroup(f"{prefix}.q_proj", (f"{prefix}.q_proj",), False),
                KernelGroup(f"{prefix}.out_proj", (f"{prefix}.out_proj",), False),
            ]
        qkv = tuple(f"{prefix}.{p}_proj" for p in "qkv")
        return [
            KernelGroup(f"{prefix}.qkv", qkv, sequence),
            KernelGroup(f"{prefix}.out_proj", (f"{prefix}.out_proj",), sequence),
        ]

    def ffn(prefix: str, *, sequence: bool) -> list[KernelGroup]:
        return [KernelGroup(f"{prefix}.ffn.fc{i}", (f"{prefix}.ffn.fc{i}",), sequence) for i in (1, 2)]

    groups: list[KernelGroup] = []
    for i in range(config.encoder_layers):
        groups += ffn(f"encoder.{i}", sequence=True)
        groups += attention(f"encoder.{i}.self_attn", cross=False, sequence=True)
    for i in range(config.decoder_layers):
        groups += ffn(f"decoder.{i}", sequence=False)
        groups += attention(f"decoder.{i}.self_attn", cross=False, sequence=False)
        groups += attention(f"decoder.{i}.encoder_attn", cross=True, sequence=False)
    groups.append(KernelGroup("lm_head", ("lm_head",), False))
    return groups


def pack_groups(
    groups: list[KernelGroup],
    source: Source,
    *,
    sequence_engine: str | None,
    stop: threading.Event | None = None,
    quantised: Mapping[str, Quantised] | None = None,
    keep: dict[str, Quantised] | None = None,
) -> dict[str, Int8Weight]:
    """Pack every group from ``source``, in parallel (one group per torch thread: quantising and
    packing a kernel runs on one core). The ``sequence`` groups first, all of them, inside
    :func:`packing_engine` when ``sequence_engine`` is set (the engine is process-wide).

    ``quantised``: the groups' int8 values already computed (a :class:`~model.int8_cache.KernelCache`),
    so only the biases are read from ``source``; ``keep``: filled with what was quantised here.
    ``stop`` set: the groups not yet started are skipped, and :class:`PackingStopped` is raised."""

    scratch = threading.local()  # .buffer: a Scratch per packing thread

    def pack(group: KernelGroup) -> Int8Weight:
        if stop is not None and stop.is_set():
            raise PackingStopped
        kernels, biases = zip(*(source(part) for part in group.parts), strict=True)
        bias: torch.Tensor | None = None
        if any(b is not None for b in biases):
            pairs = zip(kernels, biases, strict=True)
            bias = torch.cat([torch.zeros(k.shape[0]) if b is None else b.float() for k, b in pairs])
        if quantised is not None:
            kernel = quantised[group.key]
        else:
            if not hasattr(scratch, "buffer"):
                scratch.buffer = Scratch()
            kernel = quantise(*kernels, scratch=scratch.buffer)
            if keep is not None:
                keep[group.key] = kernel
        with torch.no_grad():
            return pack_quantised(kernel, bias)

    first = [g for g in groups if g.sequence and sequence_engine is not None]
    rest = [g for g in groups if g not in first]
    packed: dict[str, Int8Weight] = {}
    with ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix="int8-pack") as pool:
        if sequence_engine is not None:
            with packing_engine(sequence_engine):
                packed.update(zip((g.key for g in first), pool.map(pack, first), strict=True))
        packed.update(zip((g.key for g in rest), pool.map(pack, rest), strict=True))
    return packed


SWITCH_INTERVAL = 0.0002  # seconds; Python's default is 0.005
_switching = threading.Lock()
_switch_users: list[float] = []  # the interval to restore, once per open block


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """Let other threads take the GIL back after ``SWITCH_INTERVAL`` instead of 5 ms, inside the
    block (a process-wide setting; nested and concurrent blocks restore it once, at the last exit).

    A thread that calls torch while another runs Python code (an import) waits for the GIL
    whenever a call returns; at the default interval packing 400M-distill's kernels beside a busy
    Python thread took 10.7 s instead of 2.8 s alone, at 0.2 ms 3.7 s."""
    with _switching:
        _switch_users.append(sys.getswitchinterval())
        sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        with _switching:
            previous = _switch_users.pop(0)
            if not _switch_users:
                sys.setswitchinterval(previous)


def _write_behind(cache: KernelCache, quantised: dict[str, Quantised]) -> None:
    """``cache.write`` at the lowest CPU priority (nice 19; per thread on Linux): the first reply
    runs meanwhile on the same cores. Measured, first starts of ``bot chat`` (400M, 2-core AMD
    EPYC, medians of 5): model ready to first reply 1.19 s at normal priority, 0.91 s at nice 19
    (0.7 s without a write). Then ``quantised`` is emptied (its only holder: the int8 values, 365
    MB for 400M-distill) and the freed heap given back."""
    with suppress(OSError, AttributeError):  # not Linux, or not allowed: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        cache.write(quantised)
    finally:
        quantised.clear()
        release_freed_memory()


class PackingStopped(ModelError):
    """:meth:`Packing.stop` was called before every kernel was packed."""


class Packing:
    """:func:`pack_groups` in a background thread, started by :func:`model.load` before Keras is
    imported; :meth:`result` waits for the kernels."""

    def __init__(
        self,
        config: BlenderbotConfig,
        source: Source,
        *,
        sequence_engine: str | None,
        cache: KernelCache | None = None,
    ) -> None:
        """``cache``: read the int8 values from it when it has them, else quantise from ``source``
        and write them there once :meth:`result` is available (in a thread of its own, which the
        interpreter waits for at exit)."""
        self.groups = kernel_groups(config)
        self._stop = threading.Event()
        self._future: Future[dict[str, Int8Weight]] = Future()

        def run() -> None:
            keep: dict[str, Quantised] | None = None
            try:
                started = time.perf_counter()
                with short_switch_interval():
                    cached = cache.read(self.groups, source) if cache is not None else None
                    keep = {} if cache is not None and cached is None else None
                    kernels = pack_groups(
                        self.groups,
                        source,
                        sequence_engine=sequence_engine,
                        stop=self._stop,
                        quantised=cached,
                        keep=keep,
                    )
                logger.debug(
                    "packed %d int8 kernels in %.2f s (%s)",
                    len(kernels),
                    time.perf_counter() - started,
                    "values from the cache" if cached is not None else "quantised from the checkpoint",
                )
            except BaseException as exc:
                self._future.set_exception(exc)
                return
            self._future.set_result(kernels)
            if keep and cache is not None:
                # not a daemon thread (said explicitly: a thread started here would inherit this
                # one's daemon flag): the interpreter waits for the write at exit, so a `bot chat`
                # that ends right after its first reply still leaves the cache for the next start.
                # A daemon writer was cut off at exit ("FATAL: exception not rethrown", exit 134)
                # once the exit took 0.2 s instead of 1.2 s (bot.collection).
                threading.Thread(
                    target=_write_behind, args=(cache, keep), name="int8-cache-write", daemon=False
                ).start()

        self._thread = threading.Thread(target=run, name="int8-packing", daemon=True)
        self._thread.start()

    def result(self) -> dict[str, Int8Weight]:
        """One kernel per group, by its key; re-raises what packing raised. Waits for the thread
        itself, not only its result: a process that exited while the thread was still unwinding
        aborted in torch's teardown ("terminate called without an active exception", 4 of 8
        runs of a script that exited right after the kernels were ready)."""
        self._thread.join()
        kernels = self._future.result()
        missing = {g.key for g in self.groups} - kernels.keys()
        if missing:  # a bug, never user input
            raise ModelError(f"int8 packing left out {sorted(missing)}")
        return kernels

    def stop(self) -> None:
        """The load failed elsewhere: skip the kernels not started yet, wait for the rest, and
        drop what packing raised (the load reports its own error)."""
        self._stop.set()
        self._thread.join()
