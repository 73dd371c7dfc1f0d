"""The machine a benchmark ran on, printed with its numbers: speeds compare only on one machine."""

from __future__ import annotations

from pathlib import Path


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


def proc_status_mib(pid: int, keys: tuple[str, ...]) -> dict[str, float]:
    """Fields of /proc/<pid>/status given in kB (VmRSS, VmHWM, RssFile, ...), in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in keys}
