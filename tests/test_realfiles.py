"""The real tokenizer files of Blenderbot 400M-distill and BlenderbotSmall-90M (../shared/realfiles),
with random weights transformers builds, against transformers' own tokenizers on human chit-chat.

The reference for BlenderbotSmall is transformers' ``BlenderbotSmallTokenizer`` (the slow Python
tokenizer; its BPE code is unchanged from 4.46, which applies merges whose results are not in the
vocabulary and maps those pieces to ``__unk__``, as ParlAI does).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import model
from bot.context import build_context
from model.config import BlenderbotConfig
from model.tokenizer import BlenderbotTokenizer
from tests.checkpoints import REAL_90M, REAL_400M
from tests.cli import offline_env, run, tiny, write_config
from tests.data.transformers_4_46_tokens import HARD_CASES

LARGE, SMALL = REAL_400M, REAL_90M
# What transformers 4.46.3 itself made of these files (tests/data/transformers_4_46_tokens.py).
TABLE_4_46 = Path(__file__).resolve().parent / "data" / "transformers_4_46_tokens.json"
EXTRA = [*HARD_CASES, "   leading and trailing spaces   "]  # beside the chit-chat


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """600 real lines from chitchat-dataset (human conversations, MIT), and some hard cases."""
    import chitchat_dataset

    data = chitchat_dataset.Dataset()
    lines: list[str] = []
    for key in itertools.islice(data, 0, 200):
        lines += [m["text"] for turn in data[key]["messages"] for m in turn]
    return lines[:600] + EXTRA


def _folder(tmp: Path, source: Path, config: str = "config.json") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(source / name, tmp / name)
    shutil.copy(source / config, tmp / "config.json")
    return tmp


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("small90"), SMALL, "config.reconstructed.json")


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("large400"), LARGE)


def ours(folder: Path) -> BlenderbotTokenizer:
    return BlenderbotTokenizer.from_folder(folder, BlenderbotConfig.from_folder(folder))


def test_small_90m_tokenizer_agrees_with_transformers(small_folder: Path, sentences: list[str]) -> None:
    from transformers import BlenderbotSmallTokenizer

    reference = BlenderbotSmallTokenizer(
        vocab_file=str(small_folder / "vocab.json"), merges_file=str(small_folder / "merges.txt")
    )
    tokenizer = ours(small_folder)
    assert tokenizer.vocab_size == 54944
    unknown = 0
    for text in sentences:
        expected = reference.encode(text, add_special_tokens=False)
        got = tokenizer.encode(text, add_special_tokens=False)
        assert got == expected, text
        assert max(got, default=0) < 54944
        unknown += got.count(tokenizer.unk_id or -1)
        # The one deliberate difference: a newline decodes to "\n" as in ParlAI, not to "__newln__".
        shown = str(reference.decode(expected, skip_special_tokens=True)).replace(" __newln__ ", "\n")
        assert tokenizer.decode(got) == shown.replace("__newln__", "\n"), text
    assert unknown > 0  # the merges outside the vocabulary were met, and became __unk__ as in ParlAI


def test_large_400m_tokenizer_agrees_with_transformers(large_folder: Path, sentences: list[str]) -> None:
    from transformers import BlenderbotTokenizer as Reference

    reference = Reference.from_pretrained(str(LARGE))  # the real tokenizer_config.json too
    tokenizer = ours(large_folder)
    for text in sentences:
        expected = reference.encode(text, add_special_tokens=False)
        assert tokenizer.encode(text, add_special_tokens=False) == expected, text
        assert tokenizer.decode(expected) == reference.decode(expected, skip_special_tokens=True).strip(), (
            text
        )


@pytest.mark.parametrize("which", ["400M-distill", "90M"])
def test_the_real_files_agree_with_a_table_made_by_transformers_4_46(
    which: str, large_folder: Path, small_folder: Path
) -> None:
    """Encode, decode and the chat path for a first message against ``tokenizer(text).input_ids``
    and ``decode`` of transformers 4.46.3 (the version the port follows, with ParlAI), on 410
    sentences. The byte-level tokenizer of 4.x ends the text with ``</s>`` (so does ParlAI, and so
    does the chat path; transformers 5 and this port's ``encode`` of plain vocab.json + merges.txt
    do not), BlenderbotSmall's does not. Deliberate differences, as ParlAI shows text: 90M's
    ``__newln__`` decodes to a newline, and a last piece that does not end a word loses its
    ``@@`` (ParlAI's ``vec2txt``; 4.46 keeps it where the word's rest was ``__unk__``)."""
    table = json.loads(TABLE_4_46.read_text(encoding="utf-8"))
    assert table["transformers"] == "4.46.3" and len(table["sentences"]) >= 400
    large = which == "400M-distill"
    tokenizer = ours(large_folder if large else small_folder)
    end = [tokenizer.eos_id] if large else []
    rows = table[which]
    newlines = suffixes = 0
    for text, want, shown in zip(table["sentences"], rows["input_ids"], rows["decoded"], strict=True):
        assert tokenizer.encode(text, add_special_tokens=False) + end == want, text
        assert build_context([("user", text)], tokenizer=tokenizer, limit=10_000).ids == want, text
        if large:
            assert tokenizer.decode(want) == shown.strip(), text
            continue
        parlai = shown.replace(" __newln__ ", "\n").replace("__newln__", "\n").removesuffix("@@")
        newlines += "__newln__" in shown
        suffixes += shown.endswith("@@")
        assert tokenizer.decode(want) == parlai, text
    assert large or (newlines and suffixes)  # both differences were met


@pytest.mark.parametrize("which", ["large", "small"])
def test_the_chat_path_for_a_first_message(
    which: str, large_folder: Path, small_folder: Path, sentences: list[str]
) -> None:
    """bot/context.py builds what transformers' tokenizer gives for a first message, in the chat format."""
    from transformers import BlenderbotSmallTokenizer, BlenderbotTokenizer

    folder = large_folder if which == "large" else small_folder
    tokenizer = ours(folder)
    if which == "large":
        reference: Any = BlenderbotTokenizer.from_pretrained(str(LARGE))
    else:
        reference = BlenderbotSmallTokenizer(
            vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt")
        )
    for text in sentences[:200]:
        text = text.strip()
        if not text:
            continue
        context = build_context([("user", text)], tokenizer=tokenizer, limit=10_000)
        expected = reference.encode(" " + text, add_special_tokens=False)  # a user turn starts with a space
        if which == "large":  # and ends with </s>, as transformers 4.x and ParlAI build it
            expected.append(reference.eos_token_id)
        assert context.ids == expected, text


def _random_small_weights(folder: Path) -> None:
    from transformers import BlenderbotSmallConfig, BlenderbotSmallForConditionalGeneration

    torch.manual_seed(0)
    net = BlenderbotSmallForConditionalGeneration(BlenderbotSmallConfig.from_pretrained(str(folder)))
    net.eval().save_pretrained(str(folder), safe_serialization=True)


def test_blenderbot_small_90m_loads_from_its_real_files_and_chats(tmp_path: Path, small_folder: Path) -> None:
    folder = tmp_path / "small90"
    shutil.copytree(small_folder, folder)
    _random_small_weights(folder)  # the real 90M dimensions, random weights
    bot = model.load(folder, device="cpu")
    assert bot.config.vocab_size == 54944 and bot.tokenizer.small
    raw = tiny(tmp_path, folder)
    result = run(
        "chat",
        "--config",
        str(write_config(tmp_path, raw)),
        cwd=tmp_path,
        env=offline_env(),
        stdin="hello, my name is sam and i like dogs\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_folder_saved_by_transformers_loads(tmp_path: Path, large_folder: Path) -> None:
    """tokenizer.json with <mask> as id 8008 (outside the 8008-row table), tokenizer_config.json,
    sharded safetensors with an index and pytorch_model.bin all load; <mask> never reaches the model."""
    from transformers import BlenderbotTokenizer as Reference

    shape: dict[str, Any] = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
    }
    reference = Reference.from_pretrained(str(LARGE))
    outputs = {}
    for layout in ("sharded", "bin", "single"):
        folder = tmp_path / layout
        folder.mkdir()
        shutil.copy(large_folder / "config.json", folder / "config.json")
        reference.save_pretrained(str(folder))
        for name in ("vocab.json", "merges.txt"):  # only tokenizer.json is read when it is there
            (folder / name).unlink(missing_ok=True)
        from transformers import BlenderbotConfig, BlenderbotForConditionalGeneration

        torch.manual_seed(0)
        net = BlenderbotForConditionalGeneration(
            BlenderbotConfig.from_pretrained(str(folder), **shape)
        ).eval()
        if layout == "sharded":
            net.save_pretrained(str(folder), max_shard_size="200KB")
            assert (folder / "model.safetensors.index.json").exists()
        else:
            net.save_pretrained(str(folder), safe_serialization=layout == "single")
        bot = model.load(folder, device="cpu")
        ids = bot.tokenizer.encode(" hello <mask> there", add_special_tokens=True)
        assert 8008 not in ids and bot.tokenizer.unk_id in ids and max(ids) < 8008
        outputs[layout] = bot.generate([ids], model.GenerationSettings(num_beams=1, max_length=8))[0][
            0
        ].tokens
    assert outputs["sharded"] == outputs["bin"] == outputs["single"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
