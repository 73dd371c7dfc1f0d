"""Safety: an offensive-phrase matcher and the Detoxify classifier, for every input and every reply.

::

    SafetyError            the classifier is enabled but cannot be loaded (the daemon refuses to start)
"""

from __future__ import annotations

from safety.checker import SafetyChecker, SafetyError, Verdict
from safety.wordlist import PhraseMatcher

__all__ = ["PhraseMatcher", "SafetyChecker", "SafetyError", "Verdict"]
