"""Safety for every input and every reply: care for disclosures, the word lists over normalised
text, phrase patterns (threats, self-harm encouragement, harassment, identity attacks), and the
Detoxify classifier.

::

    SafetyError            the classifier is enabled but cannot be loaded (the daemon refuses to start)
"""

from __future__ import annotations

from safety.checker import SafetyChecker, SafetyError, Verdict
from safety.wordlist import PhraseMatcher

__all__ = ["PhraseMatcher", "SafetyChecker", "SafetyError", "Verdict"]
