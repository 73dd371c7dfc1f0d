"""Writes transformers_4_46_tokens.json: what transformers 4.46.3 makes of the real tokenizer files.

transformers 5 changed both tokenizers' behaviour in places (the byte-level one no longer appends
``</s>``; this project's port follows 4.x and ParlAI), so the reference table is made by 4.46.3
itself, in a venv of its own, and kept here for the tests (tests/test_realfiles.py)::

    python3 -m venv /tmp/tf446
    /tmp/tf446/bin/pip install transformers==4.46.3 chitchat-dataset
    /tmp/tf446/bin/python tests/data/transformers_4_46_tokens.py

For each sentence (human chit-chat from chitchat-dataset, MIT, and some hard cases), for
400M-distill (``BlenderbotTokenizer``, slow, and ``BlenderbotTokenizerFast``, which agree) and
BlenderbotSmall-90M (``BlenderbotSmallTokenizer``): ``tokenizer(text).input_ids`` and
``decode(ids, skip_special_tokens=True)``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent.parent / "shared" / "realfiles"
HARD_CASES = [  # also in tests/test_realfiles.py's sentences
    "Hello!!! How are you???",
    "I'm fine, thanks... and you?",
    "My dog's name is Rex (he's 3).",
    "Ünïcödé wörds, emoji 😀 and 中文 too",
    "Two\nlines of text",
    "UPPER case and MiXeD CaSe",
    "numbers like 1,234.56 and 3:30pm",
    "tabs\tand  double  spaces",
    "an url https://example.com/path?q=1 and an e-mail me@example.com",
]
HARD = [*HARD_CASES, "procrastinating about an assesment, a rewatch and lettuce"]  # ends on "@@"


def main() -> None:
    import chitchat_dataset
    import transformers

    # 4.46.3 has the fast class; transformers 5 (the development venv, which mypy reads) has not
    from transformers import (  # type: ignore[attr-defined]
        BlenderbotSmallTokenizer,
        BlenderbotTokenizer,
        BlenderbotTokenizerFast,
    )

    assert transformers.__version__ == "4.46.3", transformers.__version__
    data = chitchat_dataset.Dataset()
    lines: list[str] = []
    for key in itertools.islice(data, 3000, 3100):  # not the conversations the other tests read
        lines += [m["text"] for turn in data[key]["messages"] for m in turn]
    sentences = list(dict.fromkeys(line for line in lines if line.strip()))[:400] + HARD
    large = BlenderbotTokenizer.from_pretrained(str(REAL / "blenderbot-400M-distill"))
    fast = BlenderbotTokenizerFast.from_pretrained(str(REAL / "blenderbot-400M-distill"))
    small = BlenderbotSmallTokenizer(
        str(REAL / "blenderbot_small-90M" / "vocab.json"), str(REAL / "blenderbot_small-90M" / "merges.txt")
    )
    table: dict[str, object] = {"transformers": transformers.__version__, "sentences": sentences}
    for name, tokenizer in (("400M-distill", large), ("90M", small)):
        ids = [tokenizer(text).input_ids for text in sentences]
        if name == "400M-distill":
            assert ids == [fast(text).input_ids for text in sentences]  # slow and fast agree
        table[name] = {
            "input_ids": ids,
            "decoded": [tokenizer.decode(row, skip_special_tokens=True) for row in ids],
        }
    (HERE / "transformers_4_46_tokens.json").write_text(json.dumps(table, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
