"""The stages together, as ParlAI's safe_interactive: the word list, the phrase patterns (threats,
self-harm encouragement, harassment), then the classifier. Disclosures that need care (a person
who wants to hurt themselves, or reports being harassed) are recognised apart, before any of them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safety import patterns
from safety.classifier import ClassifierLoadError, ToxicityClassifier, load_classifier
from safety.wordlist import PhraseMatcher

logger = logging.getLogger(__name__)


class SafetyError(Exception):
    """The classifier is enabled but could not be loaded: the daemon refuses to start (fail closed)."""


@dataclass(frozen=True)
class Verdict:
    safe: bool
    stage: str | None = None  # "wordlist", "patterns" or "classifier" when unsafe
    scores: Mapping[str, float] = field(default_factory=dict)
    category: str | None = None  # slurs, sexual, profanity, threat, harassment, ...

    def describe(self) -> str:
        """Decision, category and scores for the log; never the text."""
        scores = ", ".join(f"{k}={v:.2f}" for k, v in sorted(self.scores.items()))
        decision = "safe" if self.safe else "unsafe"
        what = self.stage or "all stages"
        if self.category:
            what += f": {self.category}"
        return f"{decision} ({what}{'; ' + scores if scores else ''})"


SAFE = Verdict(True)


class SafetyChecker:
    def __init__(
        self,
        matcher: PhraseMatcher | None,
        classifier: ToxicityClassifier | None,
        *,
        threshold: float = 0.5,
        thresholds: Mapping[str, float] | None = None,
        phrase_patterns: bool = True,
    ) -> None:
        self.matcher = matcher
        self.phrase_patterns = phrase_patterns
        self.classifier = classifier
        self.threshold = threshold
        self.thresholds = dict(thresholds or {})

    @classmethod
    def from_config(cls, config: Any, data_dir: Path) -> SafetyChecker:
        """Build from ``Config.safety`` (typed loosely to keep safety/ free of the bot's config module)."""
        w, c = config.wordlist, config.classifier
        matcher = PhraseMatcher.default(extra=w.extra, allow=w.allow) if w.enabled else None
        classifier = None
        if c.enabled:
            device = c.device
            if device == "auto":
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            classifier = ToxicityClassifier(
                lambda: load_classifier(
                    model=c.model,
                    checkpoint=c.checkpoint,
                    config_folder=c.config_folder,
                    device=device,
                    cache=data_dir / "safety",
                )
            )
        return cls(
            matcher,
            classifier,
            threshold=c.threshold,
            thresholds=c.thresholds,
            phrase_patterns=config.patterns.enabled,
        )

    async def start(self) -> None:
        if self.classifier is None:
            logger.warning("running WITHOUT the toxicity classifier (safety.classifier.enabled is false)")
            return
        try:
            await self.classifier.start()
        except ClassifierLoadError as exc:
            raise SafetyError(
                f"the safety classifier could not be loaded: {exc}. Fix safety.classifier in the config: "
                "checkpoint and config_folder for offline use, or model: alt-profanity-check (needs no "
                "download), or enabled: false to run without it"
            ) from None
        logger.info("safety classifier ready")

    async def stop(self) -> None:
        if self.classifier is not None:
            await self.classifier.stop()

    def quick(self, text: str) -> Verdict:
        """The word list and the phrase patterns: instant, run before anything else."""
        if self.matcher is not None:
            category = self.matcher.category(text)
            if category is not None:
                return Verdict(False, "wordlist", category=category)
        if self.phrase_patterns:
            category = patterns.abuse(text)
            if category is not None:
                return Verdict(False, "patterns", category=category)
        return SAFE

    @staticmethod
    def needs_care(text: str) -> str | None:
        """``self_harm`` or ``harassed`` for a disclosure that gets a supportive reply, else None."""
        return patterns.disclosure(text)

    def _judge(self, scores: Mapping[str, float]) -> Verdict:
        unsafe = any(v >= self.thresholds.get(label, self.threshold) for label, v in scores.items())
        return Verdict(not unsafe, None if not unsafe else "classifier", dict(scores))

    async def classify(self, texts: Sequence[str]) -> list[Verdict]:
        """The classifier alone (SAFE for every text when it is disabled)."""
        if self.classifier is None or not texts:
            return [SAFE for _ in texts]
        return [self._judge(s) for s in await self.classifier.score(texts)]

    async def check_many(self, texts: Sequence[str]) -> list[Verdict]:
        """Both stages for each text; the classifier scores them in one batch."""
        quick = [self.quick(t) for t in texts]
        scored = await self.classify([t for t, v in zip(texts, quick, strict=True) if v.safe])
        rest = iter(scored)
        return [v if not v.safe else next(rest) for v in quick]
