"""Which device and dtype a model runs with (torch only, no Keras)."""

from __future__ import annotations

import torch

DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device is cuda but torch sees no CUDA GPU (is the CUDA build of torch installed?)")
    return device


def pick_dtype(dtype: str, device: str) -> str:
    """``auto``: int8 on a CPU with fbgemm (x86), else float32; on a GPU bfloat16 where supported, else
    float16. int8 only on a CPU."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        if device == "cpu":
            return "int8" if "fbgemm" in torch.backends.quantized.supported_engines else "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dtype == "int8" and device != "cpu":
        raise ValueError(
            "dtype int8 (dynamic quantisation) runs on the CPU; use bfloat16 or float16 on a GPU"
        )
    return dtype
