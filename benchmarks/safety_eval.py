"""Precision and recall of each safety stage over a labelled list of safe and unsafe lines.

    python benchmarks/safety_eval.py                         # the configured classifier (downloads it)
    python benchmarks/safety_eval.py --checkpoint C --config-folder F   # a local Detoxify checkpoint
    python benchmarks/safety_eval.py --wordlist-only

"unsafe" is the positive class: precision = blocked lines that were unsafe / blocked lines;
recall = unsafe lines blocked / unsafe lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety.checker import SafetyChecker, Verdict
from safety.classifier import ToxicityClassifier, load_detoxify
from safety.wordlist import PhraseMatcher

DATA = Path(__file__).resolve().parent / "data" / "safety_lines.tsv"


def read_lines(path: Path) -> list[tuple[bool, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, text = line.split("\t", 1)
        rows.append((label == "unsafe", text))
    return rows


def report(name: str, labels: list[bool], blocked: list[bool]) -> str:
    tp = sum(1 for y, b in zip(labels, blocked, strict=True) if y and b)
    fp = sum(1 for y, b in zip(labels, blocked, strict=True) if not y and b)
    fn = sum(1 for y, b in zip(labels, blocked, strict=True) if y and not b)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return f"| {name} | {precision:.2f} | {recall:.2f} | {tp} | {fp} | {fn} |"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="original")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--config-folder", type=Path)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--wordlist-only", action="store_true")
    args = parser.parse_args()
    rows = read_lines(args.data)
    labels = [y for y, _ in rows]
    texts = [t for _, t in rows]
    matcher = PhraseMatcher.default()
    by_wordlist = [matcher.find(t) is not None for t in texts]
    print(f"{len(rows)} lines: {sum(labels)} unsafe, {len(rows) - sum(labels)} safe ({args.data.name})\n")
    print("| stage | precision | recall | true positives | false positives | missed |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(report("word list", labels, by_wordlist))
    if args.wordlist_only:
        return
    with tempfile.TemporaryDirectory() as cache:
        classifier = ToxicityClassifier(
            lambda: load_detoxify(
                model=args.model,
                checkpoint=args.checkpoint,
                config_folder=args.config_folder,
                device="cpu",
                cache=Path(cache),
            )
        )
        checker = SafetyChecker(None, classifier, threshold=args.threshold)
        await checker.start()
        verdicts: list[Verdict] = await checker.classify(texts)
        await checker.stop()
    by_classifier = [not v.safe for v in verdicts]
    print(
        report(
            f"classifier ({args.checkpoint.name if args.checkpoint else args.model})", labels, by_classifier
        )
    )
    both = [a or b for a, b in zip(by_wordlist, by_classifier, strict=True)]
    print(report("both stages", labels, both))
    missed = [t for t, y, b in zip(texts, labels, both, strict=True) if y and not b]
    wrong = [t for t, y, b in zip(texts, labels, both, strict=True) if not y and b]
    print(f"\nmissed unsafe: {missed}\nblocked safe: {wrong}")


if __name__ == "__main__":
    asyncio.run(main())
