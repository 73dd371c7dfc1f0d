"""Text as the matchers read it: the tricks that hide a word undone, and nothing else changed.

In order: Unicode NFKC (full-width and other compatibility letters become plain ones), invisible
characters removed (zero-width spaces and joiners, soft hyphens), lowercase, look-alike letters
of other scripts mapped to Latin (Cyrillic ``уоu``, Greek ``ο``), accents dropped, letters spelled
out with spaces or dots joined (``f u c k``, ``f.u.c.k``), and leetspeak undone inside words
only: ``sh1t`` and ``@ss`` are read as ``shit`` and ``ass``, but a ``!`` ending a word
(``bitch!``) stays punctuation and a number standing alone (``455 dollars``) stays a number.
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE = dict.fromkeys(
    map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff")
)

# Letters of other scripts that look like Latin ones (after lowercasing): Unicode's confusables
# for the letters that matter here.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "и": "u", "і": "i", "ї": "i", "ј": "j", "к": "k",
        "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ц": "u",
        "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ʏ": "y",
        # Greek
        "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "σ": "o",
    }
)  # fmt: skip

_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
    }
)
# A word with at least one letter and at least one leet character inside it (not only at its end).
_LEETY_WORD = re.compile(r"(?<![\w@$!|+])[\w@$!|+]*[a-z][\w@$!|+]*")
_TRAILING = re.compile(r"[!|+]+$")
# Three or more single letters, each followed by a space, dot, dash, underscore or star.
_SPELLED = re.compile(r"(?<![a-z])(?:[a-z][ .\-_*]){2,}[a-z](?![a-z])")


def _deleet(match: re.Match[str]) -> str:
    word = match.group(0)
    tail = _TRAILING.search(word)
    end = tail.start() if tail else len(word)
    return word[:end].translate(_LEET) + word[end:]


def _join(match: re.Match[str]) -> str:
    return re.sub(r"[ .\-_*]", "", match.group(0))


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).lower().translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = _SPELLED.sub(_join, text)
    return _LEETY_WORD.sub(_deleet, text)
