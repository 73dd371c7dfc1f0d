"""Tokenizers, bad checkpoint folders, and the offline hub path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import model

SAMPLES = [
    "Hello, how are you doing today?",
    "I don't like the weather... Do you? (maybe)",
    "  Spaces   and UPPER case, émojis 🎉 and </s> text ",
]


def test_byte_level_tokenizer_matches_transformers(blenderbot_dir: Path) -> None:
    from transformers import AutoTokenizer

    ours = model.load(blenderbot_dir, device="cpu").tokenizer
    theirs = AutoTokenizer.from_pretrained(str(blenderbot_dir))
    for text in SAMPLES:
        ids = ours.encode(text)
        assert ids == theirs(text).input_ids
        assert ours.decode(ids) == str(theirs.decode(ids, skip_special_tokens=True)).strip()


def test_byte_level_tokenizer_from_vocab_and_merges(blenderbot_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    shutil.copytree(blenderbot_dir, folder)
    (folder / "tokenizer.json").unlink()
    from_files = model.load(folder, device="cpu").tokenizer
    reference = model.load(blenderbot_dir, device="cpu").tokenizer
    for text in SAMPLES:
        assert from_files.encode(text) == reference.encode(text)


def test_small_tokenizer_matches_transformers(blenderbot_small_dir: Path) -> None:
    from transformers import BlenderbotSmallTokenizer

    ours = model.load(blenderbot_small_dir, device="cpu").tokenizer
    theirs = BlenderbotSmallTokenizer(
        vocab_file=str(blenderbot_small_dir / "vocab.json"),
        merges_file=str(blenderbot_small_dir / "merges.txt"),
    )
    for text in [*SAMPLES[:2], "What do you LIKE to do for fun? I enjoy reading, hiking!"]:
        ids = ours.encode(text)
        assert ids == theirs(text).input_ids
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_weights(folder: Path, edit: dict[str, torch.Tensor | None]) -> None:
    path = folder / "model.safetensors"
    state = load_file(str(path))
    for name, value in edit.items():
        if value is None:
            state.pop(name)
        else:
            state[name] = value
    save_file(state, str(path))


def test_missing_tensor_is_named(blenderbot_dir: Path, tmp_path: Path) -> None:
    folder = _copy(blenderbot_dir, tmp_path / "ck")
    _edit_weights(folder, {"model.decoder.layers.1.fc2.bias": None})
    with pytest.raises(model.MissingTensorError, match=r"model\.decoder\.layers\.1\.fc2\.bias"):
        model.load(folder, device="cpu")


def test_unexpected_tensor_is_named(blenderbot_dir: Path, tmp_path: Path) -> None:
    folder = _copy(blenderbot_dir, tmp_path / "ck")
    _edit_weights(folder, {"model.decoder.layers.9.fc1.weight": torch.zeros(2, 2)})
    with pytest.raises(model.UnexpectedTensorError, match=r"model\.decoder\.layers\.9\.fc1\.weight"):
        model.load(folder, device="cpu")


def test_misshaped_tensor_is_named(blenderbot_dir: Path, tmp_path: Path) -> None:
    folder = _copy(blenderbot_dir, tmp_path / "ck")
    _edit_weights(folder, {"model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(24, 23)})
    with pytest.raises(model.TensorShapeError, match=r"q_proj\.weight.*\[24, 23\].*\[24, 24\]"):
        model.load(folder, device="cpu")


def test_pytorch_model_bin_and_tied_fallback(blenderbot_dir: Path, tmp_path: Path) -> None:
    folder = _copy(blenderbot_dir, tmp_path / "ck")
    state = load_file(str(folder / "model.safetensors"))
    assert "lm_head.weight" not in state  # save_pretrained keeps one copy of tied tensors
    state["lm_head.weight"] = state["model.shared.weight"].clone()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    from_bin = model.load(folder, device="cpu")
    reference = model.load(blenderbot_dir, device="cpu")
    ids = [reference.tokenizer.encode("Hello there")]
    assert (from_bin.logits(ids, [[1, 4]]) == reference.logits(ids, [[1, 4]])).all()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_pytorch_model_bin_is_memory_mapped_unless_it_predates_the_zip_format(
    blenderbot_dir: Path, tmp_path: Path
) -> None:
    """A zip-format pytorch_model.bin is mapped, not read into new memory (the file shows in the
    process's mappings while its tensors live); one saved in torch's legacy format still loads,
    read whole, with the same tensors."""
    from model.checkpoint import read_state_dict

    state = load_file(str(blenderbot_dir / "model.safetensors"))
    for name, legacy in (("zip", False), ("legacy", True)):
        folder = _copy(blenderbot_dir, tmp_path / name)
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy)
        tensors, _, files = read_state_dict(folder)
        assert files == [folder / "pytorch_model.bin"]
        assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
        mapped = str(folder / "pytorch_model.bin") in Path("/proc/self/maps").read_text()
        assert mapped == (not legacy), name
        del tensors


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "model.safetensors").unlink(), "neither model.safetensors nor pytorch_model.bin"),
        (lambda f: (f / "config.json").unlink(), "config.json does not exist"),
        (lambda f: (f / "config.json").write_text("{not json"), "config.json cannot be read"),
        (lambda f: (f / "model.safetensors").write_bytes(b"garbage"), "model.safetensors cannot be read"),
        (
            lambda f: (f / "config.json").write_text(json.dumps({"model_type": "bart"})),
            "model_type is 'bart'",
        ),
    ],
    ids=["no-weights", "no-config", "bad-json", "corrupt-weights", "wrong-type"],
)
def test_bad_folders_give_clear_errors(blenderbot_dir: Path, tmp_path: Path, damage, message: str) -> None:
    folder = _copy(blenderbot_dir, tmp_path / "ck")
    damage(folder)
    with pytest.raises(model.CheckpointError, match=message):
        model.load(folder, device="cpu")


def test_offline_hub_id_says_how_to_get_weights(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "import model\n"
        "try:\n"
        f"    model.load('facebook/blenderbot-400M-distill', data_dir={str(tmp_path)!r})\n"
        "except model.WeightsUnavailableError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert "ERR model facebook/blenderbot-400M-distill is not downloaded" in out.stdout, out.stderr
    assert "copy a checkpoint folder" in out.stdout
    assert str(tmp_path / "models" / "facebook--blenderbot-400M-distill") in out.stdout


def test_cached_hub_copy_is_used_without_network(blenderbot_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(blenderbot_dir, tmp_path / "models" / "org--tiny")
    m = model.load("org/tiny", device="cpu", data_dir=tmp_path, download=False)
    assert m.config.vocab_size == 300


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_beams"):
        model.GenerationSettings(num_beams=0)
    with pytest.raises(ValueError, match="top_p"):
        model.GenerationSettings(top_p=0.0)
    with pytest.raises(ValueError, match="num_return"):
        model.GenerationSettings(num_beams=2, num_return=3)


def test_cache_contract_is_checked() -> None:
    from model.layers.kv_cache import KVCache

    cache = KVCache(
        layers=1, batch=2, heads=1, head_dim=4, capacity=4, dtype=torch.float32, device=torch.device("cpu")
    )
    k = torch.zeros(2, 1, 2, 4)
    cache.update(0, k, k)
    with pytest.raises(model.CacheContractError, match="written twice"):
        cache.update(0, k, k)
    cache.advance(2)
    with pytest.raises(model.CacheContractError, match="multi-position"):
        cache.update(0, k, k)
    one = torch.zeros(2, 1, 1, 4)
    cache.update(0, one, one)
    cache.advance(1)
    cache.update(0, one, one)
    cache.advance(1)
    with pytest.raises(model.CacheContractError, match="4 positions"):
        cache.update(0, one, one)
