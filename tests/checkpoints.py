"""Tiny Blenderbot and BlenderbotSmall checkpoints, built by the tests themselves.

Random transformers models with small, odd configs saved with ``save_pretrained``, plus
tokenizers trained with the ``tokenizers`` library on a few sentences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CORPUS = [
    "Hello, how are you doing today?",
    "I am doing well, thank you. I just got back from the park with my dog.",
    "Do you have any pets? I love dogs and cats.",
    "What do you like to do for fun? I enjoy reading books and hiking.",
    "My favourite food is pizza, but I also like sushi.",
    "The weather is nice today, it's sunny and warm.",
    "I work as a teacher at a school near my house.",
    "Where are you from? I'm from a small town in the mountains.",
    "That sounds great! I have never been there before.",
    "Music is my passion, I play the guitar and the piano.",
]

# The real tokenizer files and configs of 400M-distill and 90M (no weights), beside the clone.
REALFILES = Path(__file__).resolve().parent.parent.parent / "shared" / "realfiles"
REAL_400M = REALFILES / "blenderbot-400M-distill"
REAL_90M = REALFILES / "blenderbot_small-90M"

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # ids 0..4: pad, bos/start, eos, unk, mask


def _odd_config(vocab_size: int, **overrides: object) -> dict[str, Any]:
    base: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": 24,
        "encoder_layers": 2,
        "decoder_layers": 3,
        "encoder_attention_heads": 3,
        "decoder_attention_heads": 3,
        "encoder_ffn_dim": 40,
        "decoder_ffn_dim": 44,
        "max_position_embeddings": 64,
        "scale_embedding": True,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
        "forced_eos_token_id": 2,
        "init_std": 0.3,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
    }
    base.update(overrides)
    return base


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Large random weights, so that logits are far apart and argmax is stable across float orderings."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                p.copy_(
                    1.0 + 0.2 * torch.randn(p.shape, generator=gen)
                    if name.endswith("weight")
                    else 0.2 * torch.randn(p.shape, generator=gen)
                )
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        bias = getattr(model, "final_logits_bias", None)
        if bias is not None:
            bias.copy_(0.5 * torch.randn(bias.shape, generator=gen))


# A bigger random Blenderbot (d_model 256, 6 decoder layers): generation takes long enough to be
# caught mid-way (tests) and the model dominates a reply's cost (benchmarks/scale_test.py).
# Generation settings for a reply on the HEAVY_SHAPE checkpoint that is still running when a test
# kills or signals the daemon: 1.4 s on the fastest machine seen (Xeon with AMX, 2026-12-02; 10
# beams took 0.23 s there, which tests that once assumed "seconds" no longer had).
SLOW_GENERATION: dict[str, Any] = {"num_beams": 200, "min_length": 64, "max_length": 64}

HEAVY_SHAPE: dict[str, Any] = {
    "d_model": 256,
    "encoder_ffn_dim": 1024,
    "decoder_ffn_dim": 1024,
    "decoder_layers": 6,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
}


def build_blenderbot(
    folder: Path,
    *,
    seed: int = 0,
    generation: dict[str, Any] | None = None,
    shape: dict[str, Any] | None = None,
) -> Path:
    """A byte-level BPE Blenderbot checkpoint (pre-LayerNorm), saved like the hub's."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BlenderbotConfig, BlenderbotForConditionalGeneration, BlenderbotTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=SPECIALS)
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text().splitlines()[1:] if line]
    hf_tok = BlenderbotTokenizer(vocab=vocab, merges=merges)
    hf_tok.save_pretrained(str(folder))
    config = BlenderbotConfig(**{**_odd_config(len(vocab)), **(shape or {})})
    torch.manual_seed(seed)
    model = BlenderbotForConditionalGeneration(config).eval()
    if shape is None:
        _randomise(model, seed)
    model.save_pretrained(str(folder))
    if generation is not None:
        ids = {
            "bos_token_id": 1,
            "decoder_start_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "forced_eos_token_id": 2,
        }
        (folder / "generation_config.json").write_text(json.dumps({**ids, **generation}))
    return folder


END_OF_WORD = "\ue000"  # a private-use character: the end of a word, while the vocabulary is learned


def build_blenderbot_small(folder: Path, *, seed: int = 1) -> Path:
    """A BlenderbotSmall checkpoint (post-LayerNorm) with a ParlAI-style subword-nmt vocabulary.

    The same files at every build. The trainer's own ``end_of_word_suffix`` numbers its ``x</w>``
    pieces in hash-map order, which differs from process to process, and merges of equal count
    are ordered by those numbers (huggingface/tokenizers#1794): 3 builds gave 3 different
    vocabularies, and the tests' inputs, encoded with them, changed from run to run. So the end of
    a word is a character of its own here (the trainer sorts its alphabet), and the pieces are
    spelled as subword-nmt does afterwards: ``x</w>`` pieces are whole from the start."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BlenderbotSmallConfig, BlenderbotSmallForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["__null__", "__start__", "__end__", "__unk__", "__newln__"]
    trainer_tok = Tokenizer(models.BPE(unk_token="__unk__"))
    trainer_tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words = [
        " ".join(word + END_OF_WORD for word in re.findall(r"[^\s']+|'", s.lower()))
        for s in (
            s.replace(".", " .").replace(",", " ,").replace("?", " ?").replace("!", " !") for s in CORPUS
        )
    ]
    trainer = trainers.BpeTrainer(vocab_size=260, special_tokens=specials)
    trainer_tok.train_from_iterator(words, trainer)
    raw = json.loads(trainer_tok.to_str())["model"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in raw["merges"]]

    def spelled(piece: str) -> str:  # subword-nmt spelling: "ab@@" inside a word, "ab" at its end
        return piece[: -len(END_OF_WORD)] if piece.endswith(END_OF_WORD) else piece + "@@"

    letters = sorted(t for t in raw["vocab"] if len(t) == 1 and t != END_OF_WORD)
    finals = sorted({word[-2] for word in " ".join(words).split()})  # the letters that end a word
    pieces = [*letters, *(f + END_OF_WORD for f in finals)]
    # A merge onto the end of a word alone is no merge in subword-nmt (the trainer's "ab" + end,
    # which would make "ab" a whole word, has no spelling there): only the other merges are kept.
    merges = [(a, b) for a, b in pairs if b != END_OF_WORD]
    pieces += [a + b for a, b in merges]
    vocab = {token: index for index, token in enumerate(specials)}
    for piece in pieces:
        vocab.setdefault(spelled(piece), len(vocab))
    lines = [" ".join(p.replace(END_OF_WORD, "</w>") for p in pair) for pair in merges]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
    config = BlenderbotSmallConfig(
        **_odd_config(
            max(vocab.values()) + 1, d_model=30, encoder_attention_heads=5, decoder_attention_heads=5
        )
    )
    torch.manual_seed(seed)
    model = BlenderbotSmallForConditionalGeneration(config).eval()
    _randomise(model, seed)
    model.save_pretrained(str(folder))
    return folder


TOXIC = [
    "you are worthless and pathetic",
    "i hate you, you pathetic worthless loser",
    "go away you disgusting worthless creature",
    "everyone hates you, you pathetic loser",
    "you are a disgusting pathetic waste",
    "worthless loser, nobody wants you here",
]
CLEAN = [
    "i love walking my dog in the park",
    "what a lovely sunny day it is today",
    "do you like reading books about history",
    "my favourite food is pizza with cheese",
    "thank you so much for your kind help",
    "we went hiking in the mountains last week",
    "the weather is nice and warm today",
    "hello, how are you doing today?",
    "i am doing well, thank you.",
]
DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


# Detoxify "original" is bert-base-uncased with 6 labels: its shape, for timing a real-size start.
DETOXIFY_ORIGINAL: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
}
_DETOXIFY_TINY: dict[str, Any] = {
    "vocab_size": 400,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
    "initializer_range": 0.3,
}


def build_detoxify(
    folder: Path,
    *,
    seed: int = 0,
    steps: int = 60,
    shape: dict[str, Any] | None = None,
    texts: list[str] | None = None,
) -> tuple[Path, Path]:
    """A Detoxify checkpoint (BERT) with its config folder, as Detoxify's files are laid out.

    By default tiny and trained for ``steps`` so toxic and clean text score apart. ``shape``
    (e.g. :data:`DETOXIFY_ORIGINAL`, with ``steps=0``) gives random weights of that size; its
    WordPiece vocabulary is trained on ``texts`` and filled up to ``vocab_size`` with BERT's
    ``[unusedN]`` entries.

    Returns (checkpoint file, config folder). Like the real checkpoints, its ``model_type`` names a
    hub model, so loading it offline needs the config folder (Detoxify's trap).
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    dims = dict(shape or _DETOXIFY_TINY)
    vocab_size = dims.pop("vocab_size")
    config_folder = folder / "config"
    config_folder.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts or TOXIC + CLEAN + CORPUS, vocab_size=vocab_size, min_frequency=1)
    wordpiece.save_model(str(config_folder))
    lines = (config_folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    if shape is not None:
        lines += [f"[unused{i}]" for i in range(vocab_size - len(lines))]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(lines)})
    tokenizer.save_pretrained(str(config_folder))
    config = BertConfig(  # type: ignore[call-arg]
        vocab_size=tokenizer.vocab_size, num_labels=len(DETOXIFY_CLASSES), **dims
    )
    config.save_pretrained(str(config_folder))
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if steps:
        labels = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * len(TOXIC) + [[0.0] * 6] * len(CLEAN))
        batch = tokenizer(TOXIC + CLEAN, return_tensors="pt", padding=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            logits = model(**batch).logits
            torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
            optimizer.step()
    model.eval()
    checkpoint = folder / ("toxic_tiny.ckpt" if shape is None else "toxic_original.ckpt")
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        "model_type": "bert-base-uncased",
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(DETOXIFY_CLASSES),
                    }
                },
                "dataset": {"args": {"classes": DETOXIFY_CLASSES}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint, config_folder
