"""The int8 values of a checkpoint's kernels on disk, so that later starts only pack them.

Quantising is about half of the int8 packing work (400M-distill, one core: 1.2 of 2.5 s after
the faster rounding in :func:`model.int8.quantise`); packing for fbgemm or oneDNN is per process
and per CPU, so only the engine-independent part is stored: each kernel group's int8 values and
per-channel scales (``{key}.ints``, ``{key}.scales``), about a quarter of the float32 checkpoint.

The file is ``{data_dir}/int8/{folder name}-{digest}.safetensors``, the digest naming the
checkpoint's weight files (name, size, modification time) and :data:`FORMAT`; a changed or
replaced checkpoint gets a new file. It is written after the first int8 load, in the packing
thread once the model is ready (to a temporary name, then renamed: a process that exits meanwhile
leaves no partial file). A file that cannot be read, or does not fit the network, is ignored with
a warning, and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

import torch

from model.int8 import KernelGroup, Quantised, Source

logger = logging.getLogger(__name__)

FORMAT = "blenderd-int8-1"  # change when what is stored, or how it is quantised, changes
STALE_SECONDS = 600.0  # a partial file this old is left by a process that exited while writing


class KernelCache:
    """One checkpoint's quantised kernels under ``directory``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_checkpoint(cls, directory: Path, folder: Path, files: list[Path]) -> KernelCache:
        identity = [FORMAT, *((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])]
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        return cls(directory / f"{folder.name}-{digest}.safetensors")

    def read(self, groups: list[KernelGroup], source: Source) -> dict[str, Quantised] | None:
        """Every group's int8 values (memory-mapped), or None when there is no usable file. Shapes
        are checked against ``source``'s kernels (their shapes only: no data is read)."""
        if not self.path.exists():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(self.path))
        except (SafetensorError, OSError) as exc:
            logger.warning(
                "int8 kernel cache %s cannot be read (%s); packing from the checkpoint", self.path, exc
            )
            return None
        quantised: dict[str, Quantised] = {}
        for group in groups:
            ints, scales = tensors.get(f"{group.key}.ints"), tensors.get(f"{group.key}.scales")
            rows = sum(source(part)[0].shape[0] for part in group.parts)
            columns = source(group.parts[0])[0].shape[1]
            if (
                ints is None
                or scales is None
                or ints.dtype != torch.int8
                or tuple(ints.shape) != (rows, columns)
                or tuple(scales.shape) != (rows,)
            ):
                logger.warning(
                    "int8 kernel cache %s does not fit this network (%s); packing from the checkpoint",
                    self.path,
                    group.key,
                )
                return None
            quantised[group.key] = Quantised(ints, scales.float())
        return quantised

    def write(self, quantised: Mapping[str, Quantised]) -> None:
        """Store ``quantised``; a failure (disk full, read-only data_dir) is a warning, not an error."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for key, kernel in quantised.items():
            tensors[f"{key}.ints"] = kernel.ints.contiguous()
            tensors[f"{key}.scales"] = kernel.scales.contiguous()
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            for stale in self.path.parent.glob(f"{self.path.name}.*.partial"):
                if time.time() - stale.stat().st_mtime > STALE_SECONDS:  # its process exited mid-write
                    stale.unlink(missing_ok=True)
            save_file(tensors, str(partial))
            os.replace(partial, self.path)
        except OSError as exc:
            with suppress(OSError):  # not there, or its folder cannot be made
                partial.unlink(missing_ok=True)
            logger.warning(
                "int8 kernel cache %s cannot be written (%s); the next start packs again", self.path, exc
            )
            return
        logger.info("int8 kernels cached in %s for the next start", self.path)
