"""Blenderbot tokenizers built with the ``tokenizers`` library from a checkpoint folder.

* Blenderbot: byte-level BPE with a prefix space. Read from tokenizer.json when the checkpoint
  has one (its post-processor, if any, applies), else from vocab.json + merges.txt with none, as
  transformers 5 does (4.x and ParlAI end the text with ``</s>``). Callers that need the end
  token (the context builder) append ``eos_id``: the chat path gives 4.46's ids.
* BlenderbotSmall: the lowercase subword-nmt BPE of ParlAI (``@@`` marks a piece that does not
  end a word). Its vocabulary is rewritten for the ``tokenizers`` BPE model: ``abc@@`` becomes
  ``abc`` and a word-final ``abc`` becomes ``abc</w>``, so ids are unchanged. The real 90M files
  have merges whose results are not in the vocabulary (5,755 of 30,000); ParlAI and transformers
  apply them anyway and look the pieces up afterwards, unknown ones becoming ``__unk__``. The
  ``tokenizers`` BPE model needs every merge result in its vocabulary, so those pieces get ids past
  the model's table, and :meth:`BlenderbotTokenizer.encode` turns each of them into ``__unk__``:
  no id outside the embedding table ever reaches the model. Text is shown as ParlAI shows it:
  ``__newln__`` is a newline, and a last piece that does not end a word loses its ``@@``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from model.config import BlenderbotConfig, read_json
from model.errors import CheckpointError

_NEWLINE = re.compile(r" *\n *")
_SMALL_SPECIALS = ("__start__", "__end__", "__unk__", "__null__", "__newln__")
_BYTE_LEVEL_SPECIALS = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")


class BlenderbotTokenizer:
    """Text <-> ids for one checkpoint. ``special_ids`` are dropped by ``decode``."""

    def __init__(
        self,
        backend: Tokenizer,
        *,
        eos_id: int,
        pad_id: int,
        small: bool,
        vocab_size: int | None = None,
        unk_id: int | None = None,
    ) -> None:
        """``vocab_size``: the model's embedding table; ids from ``vocab_size`` up become ``unk_id``."""
        self._backend = backend
        self.vocab_size = (
            vocab_size if vocab_size is not None else backend.get_vocab_size(with_added_tokens=True)
        )
        self.unk_id = unk_id
        # The same tokenizer, but a special token written in the text is plain text (people's messages).
        self._plain = Tokenizer.from_str(backend.to_str())
        self._plain.encode_special_tokens = True
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.small = small
        self.special_ids = frozenset(
            i
            for tok in (_SMALL_SPECIALS if small else _BYTE_LEVEL_SPECIALS)
            if (i := backend.token_to_id(tok)) is not None and tok != "__newln__"
        )

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, post-processed like transformers' tokenizer when ``add_special_tokens``."""
        return self._in_table(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_plain(self, text: str) -> list[int]:
        """Ids of text people wrote: ``</s>`` or ``__end__`` in it is spelled out, never a special id."""
        return self._in_table(self._plain.encode(text, add_special_tokens=False).ids)

    def _in_table(self, ids: list[int]) -> list[int]:
        """Ids the embedding table has: a piece past it (a merge result outside the vocabulary, an
        added token such as ``<mask>`` saved by transformers) becomes the unknown token."""
        size, unk = self.vocab_size, self.unk_id
        if unk is None:
            return list(ids)
        return [i if i < size else unk for i in ids]

    def decode(self, ids: list[int] | tuple[int, ...], *, skip_special_tokens: bool = True) -> str:
        keep = [i for i in ids if not (skip_special_tokens and i in self.special_ids)]
        text = self._backend.decode(keep, skip_special_tokens=False)
        if self.small:
            text = _NEWLINE.sub("\n", text.replace("__newln__", "\n"))  # as ParlAI shows it
        return text.strip()

    @classmethod
    def from_folder(cls, folder: Path, config: BlenderbotConfig) -> BlenderbotTokenizer:
        small = config.variant == "blenderbot_small"
        backend = _small_backend(folder) if small else _byte_level_backend(folder)
        unk = backend.token_to_id("__unk__" if small else "<unk>")
        if unk is None or unk >= config.vocab_size:
            raise CheckpointError(
                f"{folder}: the tokenizer has no unknown token inside the model's vocabulary"
            )
        return cls(
            backend,
            eos_id=config.eos_token_id,
            pad_id=config.pad_token_id,
            small=small,
            vocab_size=config.vocab_size,
            unk_id=unk,
        )


def _read_vocab_merges(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if not vocab_path.exists() or not merges_path.exists():
        raise CheckpointError(f"{folder} has no tokenizer.json and no vocab.json + merges.txt")
    vocab = {str(k): int(v) for k, v in read_json(vocab_path).items()}
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{merges_path} cannot be read: {exc}") from None
    merges: list[tuple[str, str]] = []
    for line in lines:
        parts = line.split()
        if line.startswith("#version") or len(parts) != 2:
            continue
        merges.append((parts[0], parts[1]))
    return vocab, merges


def _byte_level_backend(folder: Path) -> Tokenizer:
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists():
        try:
            return Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise CheckpointError(f"{tokenizer_json} cannot be read: {exc}") from None
    vocab, merges = _read_vocab_merges(folder)
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, normalized=False) for t in _BYTE_LEVEL_SPECIALS if t in vocab])
    return backend


def _small_backend(folder: Path) -> Tokenizer:
    vocab, merges = _read_vocab_merges(folder)
    renamed: dict[str, int] = {}
    for token, index in vocab.items():
        if token in _SMALL_SPECIALS:
            renamed[token] = index
        elif token.endswith("@@"):
            renamed[token[:-2]] = index
        else:
            renamed[token + "</w>"] = index
    unk = "__unk__" if "__unk__" in vocab else None
    # Merge results (and their parts) missing from the vocabulary get ids past it: see the docstring.
    extra = max(vocab.values(), default=-1) + 1
    for left, right in merges:
        for piece in (left, right, left + right):
            if piece not in renamed:
                renamed[piece] = extra
                extra += 1
    backend = Tokenizer(BPE(vocab=renamed, merges=merges, unk_token=unk, end_of_word_suffix="</w>"))
    # ParlAI's rules: a newline becomes __newln__, ".,!?()" start a new piece, "'" stands alone.
    backend.normalizer = normalizers.Sequence(
        [normalizers.Replace("\n", " __newln__ "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"[.,!?()]"), behavior="merged_with_next"),
            pre_tokenizers.Split("'", behavior="isolated"),
        ]
    )
    backend.decoder = decoders.BPEDecoder(suffix="</w>")
    specials = [t for t in _SMALL_SPECIALS if t in vocab and t != "__newln__"]
    backend.add_special_tokens([AddedToken(t, normalized=True) for t in specials])
    if "__newln__" in vocab:  # a newline, also in people's text: an added token, not a special one
        backend.add_tokens([AddedToken("__newln__", normalized=True, special=False)])
    return backend


@dataclass(frozen=True)
class TokenizerOnly:
    """What a process that builds model inputs but runs no model needs of a checkpoint (a daemon
    with remote workers): the tokenizer and the position limit."""

    tokenizer: BlenderbotTokenizer
    max_positions: int

    @classmethod
    def from_folder(cls, folder: Path) -> TokenizerOnly:
        config = BlenderbotConfig.from_folder(folder)
        return cls(BlenderbotTokenizer.from_folder(folder, config), config.max_position_embeddings)
