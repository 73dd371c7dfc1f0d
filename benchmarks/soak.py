"""The resident size of ``python -m bot run`` while its web chat answers many people.

Starts the daemon as a user does (a config file, the web chat on loopback, the safety classifier
off unless ``--classifier``), sends chitchat-dataset lines from ``--people`` browsers,
``--concurrency`` at a time, and prints the daemon's VmRSS every ``--every`` messages and once
more after it has been idle for ``--idle`` seconds. ``--python`` (repeatable) runs the same load
on other interpreters (a plain venv of another commit, say), one after the other, so their lines
compare.

    python benchmarks/soak.py --checkpoint /path/to/400M-folder --messages 800 \
        --python /tmp/oldvenv/bin/python --python .venv/bin/python

Run it with the development venv (``make install-dev``: aiohttp, chitchat-dataset).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import cpu_flags, proc_status_mib


def chitchat_lines(seed: int = 1) -> list[str]:
    from chitchat_dataset import Dataset

    lines = [
        m["text"].strip()
        for conversation in Dataset().values()
        for turn in conversation["messages"]
        for m in turn
        if m["text"].strip()
    ]
    random.Random(seed).shuffle(lines)
    return lines


def status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of ``pid``, in MiB."""
    return {k: int(v) for k, v in proc_status_mib(pid, ("VmRSS", "VmHWM", "RssAnon")).items()}


def classifier(args: argparse.Namespace) -> dict[str, object]:
    if args.classifier is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "checkpoint": str(args.classifier),
        "config_folder": str(args.classifier_config),
        "threshold": args.classifier_threshold,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def soak(python: str, args: argparse.Namespace, lines: list[str], tmp: Path) -> None:
    port = free_port()
    config = {
        "data_dir": str(tmp / "data"),
        "model": {
            "source": str(args.checkpoint),
            "dtype": args.dtype,
            "generation": {"num_beams": args.beams, "max_length": args.max_length},
        },
        "rate_limit": {"messages": 1_000_000, "per_seconds": 1},
        "http": {"enabled": True, "host": "127.0.0.1", "port": port},
        "web": {"enabled": True},
        "safety": {"classifier": classifier(args)},
        "logging": {"level": "WARNING"},
    }
    (tmp / "config.yaml").write_text(json.dumps(config))
    label = f"[{python}]"
    with open(tmp / "stderr", "w") as stderr:
        daemon = subprocess.Popen(
            [python, "-m", "bot", "run", "--config", str(tmp / "config.yaml")], cwd=tmp, stderr=stderr
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # as Docker's HEALTHCHECK asks: `python -m bot healthcheck`
            if daemon.poll() is not None:
                raise SystemExit(f"{label} the daemon exited: {(tmp / 'stderr').read_text()[-2000:]}")
            check = [python, "-m", "bot", "healthcheck", "--config", str(tmp / "config.yaml")]
            if subprocess.run(check, cwd=tmp, capture_output=True).returncode == 0:
                break
            await asyncio.sleep(0.5)
        else:
            raise SystemExit(f"{label} the daemon never became healthy")
        async with aiohttp.ClientSession() as http:
            print(f"{label} ready: {status(daemon.pid)}", flush=True)
            people = [secrets.token_hex(16) for _ in range(args.people)]
            gate = asyncio.Semaphore(args.concurrency)
            done = failed = 0
            started = time.perf_counter()

            async def one(i: int) -> None:
                nonlocal done, failed
                async with (
                    gate,
                    http.post(
                        f"{base}/chat/api/message",
                        json={"text": lines[i % len(lines)][:300]},
                        cookies={"blenderd_id": people[i % len(people)]},
                    ) as response,
                ):
                    await response.read()
                    failed += response.status != 200
                done += 1
                if done % args.every == 0:
                    elapsed = time.perf_counter() - started
                    print(
                        f"{label} {done} answered ({failed} failed, {elapsed:.0f} s): {status(daemon.pid)}",
                        flush=True,
                    )

            await asyncio.gather(*(one(i) for i in range(args.messages)))
            await asyncio.sleep(args.idle)
            print(f"{label} idle {args.idle:.0f} s after {done}: {status(daemon.pid)}", flush=True)
    finally:
        daemon.terminate()
        daemon.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a Blenderbot checkpoint folder")
    parser.add_argument("--python", action="append", help="interpreter(s) to run the daemon with")
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--people", type=int, default=201)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--dtype", default="int8")
    parser.add_argument(
        "--classifier", type=Path, help="a Detoxify checkpoint file (default: classifier off)"
    )
    parser.add_argument("--classifier-config", type=Path, help="its base model's config and tokenizer folder")
    parser.add_argument(
        "--classifier-threshold",
        type=float,
        default=0.5,
        help="e.g. 0.99 for random weights, which block all",
    )
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=20)
    args = parser.parse_args()
    if (args.classifier is None) != (args.classifier_config is None):
        parser.error("--classifier and --classifier-config go together")
    print(f"# cpu: {cpu_flags()}")
    print(
        f"# {args.checkpoint.name}, {args.dtype}, beam {args.beams} x {args.max_length}, classifier "
        f"{args.classifier.name if args.classifier else 'off'}, {args.messages} "
        f"messages from {args.people} people, {args.concurrency} at a time; MiB"
    )
    lines = chitchat_lines()
    for python in args.python or [sys.executable]:
        with tempfile.TemporaryDirectory(prefix="blenderd-soak-") as tmp:
            asyncio.run(soak(python, args, lines, Path(tmp)))


if __name__ == "__main__":
    main()
