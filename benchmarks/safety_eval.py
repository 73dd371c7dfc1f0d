"""Precision, recall and F1 of each safety stage and combination, per category, with latency.

    python benchmarks/safety_eval.py --no-classifier       # the stages that need no download
    python benchmarks/safety_eval.py                        # plus Detoxify (downloads it)
    python benchmarks/safety_eval.py --checkpoint C --config-folder F   # a local Detoxify checkpoint

The labelled lines (benchmarks/data/safety_lines.tsv, written for this project) have a category
each: unsafe ones (insult, threat, identity_attack, sexual, self_harm_encouragement, obfuscation,
profanity) and safe ones (identity, medical, names, idioms, chitchat, disclosure). "unsafe" is
the positive class. A disclosure (someone who wants to hurt themselves, or is harassed) must not
be blocked: it should get the care reply, counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safety import patterns
from safety.checker import SafetyChecker
from safety.classifier import ToxicityClassifier, load_classifier
from safety.wordlist import PhraseMatcher

DATA = Path(__file__).resolve().parent / "data" / "safety_lines.tsv"


def read_lines(path: Path) -> list[tuple[bool, str, str]]:
    """(unsafe, category, text) for each labelled line."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, category, text = line.split("\t", 2)
        rows.append((label == "unsafe", category, text))
    return rows


def scores(labels: Sequence[bool], blocked: Sequence[bool]) -> tuple[float, float, float]:
    tp = sum(1 for y, b in zip(labels, blocked, strict=True) if y and b)
    fp = sum(1 for y, b in zip(labels, blocked, strict=True) if not y and b)
    fn = sum(1 for y, b in zip(labels, blocked, strict=True) if y and not b)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else float("nan")
    return precision, recall, f1


def timed(check: Callable[[str], bool], texts: Sequence[str]) -> tuple[list[bool], float]:
    """Each text's verdict, and the mean microseconds per message."""
    started = time.perf_counter()
    verdicts = [check(t) for t in texts]
    return verdicts, (time.perf_counter() - started) / len(texts) * 1e6


def by_category(rows: Sequence[tuple[bool, str, str]], blocked: Sequence[bool]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_, category, _), b in zip(rows, blocked, strict=True):
        counts[category][0] += int(b)
        counts[category][1] += 1
    return {c: (n, total) for c, (n, total) in counts.items()}


async def classify(texts: Sequence[str], args: argparse.Namespace) -> tuple[list[bool], float]:
    with tempfile.TemporaryDirectory() as cache:
        classifier = ToxicityClassifier(
            lambda: load_classifier(
                model=args.model,
                checkpoint=args.checkpoint,
                config_folder=args.config_folder,
                device="cpu",
                cache=Path(cache),
            )
        )
        checker = SafetyChecker(None, classifier, threshold=args.threshold, phrase_patterns=False)
        await checker.start()
        started = time.perf_counter()
        verdicts = await checker.classify(list(texts))
        elapsed = (time.perf_counter() - started) / len(texts) * 1e6
        await checker.stop()
    return [not v.safe for v in verdicts], elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="original")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--config-folder", type=Path)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--no-classifier", action="store_true", help="only the stages that need no download")
    parser.add_argument("--show", action="store_true", help="print the lines each stage gets wrong")
    args = parser.parse_args()
    rows = read_lines(args.data)
    labels = [y for y, _, _ in rows]
    texts = [t for _, _, t in rows]
    matcher = PhraseMatcher.default()
    stages: dict[str, tuple[list[bool], float]] = {
        "word list": timed(lambda t: matcher.find(t) is not None, texts),
        "phrase patterns": timed(lambda t: patterns.abuse(t) is not None, texts),
    }
    care, care_us = timed(lambda t: patterns.disclosure(t) is not None, texts)
    # Care comes first in the bot: a disclosure is answered with care and never blocked.
    instant = [
        (w or p) and not c
        for w, p, c in zip(stages["word list"][0], stages["phrase patterns"][0], care, strict=True)
    ]
    stages["word list + patterns (no download)"] = (
        instant,
        stages["word list"][1] + stages["phrase patterns"][1],
    )
    if not args.no_classifier:
        label = f"classifier ({args.checkpoint.name if args.checkpoint else args.model})"
        stages[label] = await classify(texts, args)
        every = [(a or b) and not c for a, b, c in zip(instant, stages[label][0], care, strict=True)]
        stages["all stages"] = (every, stages[label][1] + stages["word list + patterns (no download)"][1])
    print(f"{len(rows)} lines: {sum(labels)} unsafe, {len(rows) - sum(labels)} safe ({args.data.name})\n")
    print("| stage | precision | recall | F1 | µs per message |")
    print("| --- | --- | --- | --- | --- |")
    for name, (blocked, micros) in stages.items():
        precision, recall, f1 = scores(labels, blocked)
        print(f"| {name} | {precision:.2f} | {recall:.2f} | {f1:.2f} | {micros:.0f} |")
    names = list(stages)
    categories = list(dict.fromkeys(c for _, c, _ in rows))
    print("\nPer category: unsafe rows give recall (blocked / lines), safe rows the false-alarm rate.\n")
    print("| category | lines | " + " | ".join(names) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
    tables = {name: by_category(rows, blocked) for name, (blocked, _) in stages.items()}
    for category in categories:
        total = tables[names[0]][category][1]
        cells = [f"{tables[n][category][0] / total:.2f}" for n in names]
        print(f"| {category} | {total} | " + " | ".join(cells) + " |")
    disclosures = [c for (_, cat, _), c in zip(rows, care, strict=True) if cat == "disclosure"]
    wrong_care = sum(1 for (_, cat, _), c in zip(rows, care, strict=True) if c and cat != "disclosure")
    print(
        f"\ncare: {sum(disclosures)}/{len(disclosures)} disclosures get the care reply; "
        f"{wrong_care} other lines do; {care_us:.0f} µs per message"
    )
    if args.show:
        for name, (blocked, _) in stages.items():
            missed = [t for t, y, b in zip(texts, labels, blocked, strict=True) if y and not b]
            alarms = [t for t, y, b in zip(texts, labels, blocked, strict=True) if not y and b]
            print(f"\n{name}: missed {missed}\n{name}: false alarms {alarms}")


if __name__ == "__main__":
    asyncio.run(main())
