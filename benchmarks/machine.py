"""The machine a benchmark ran on, printed with its numbers: speeds compare only on one machine."""

from __future__ import annotations


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
    except OSError:
        return "unknown"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?"
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []
    )
    wanted = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c", "vnni"))]
    return f"{name}; {' '.join(wanted)}"
