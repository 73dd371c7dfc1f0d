"""The backbone is a real Keras model: get_config/from_config and a .keras save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import model
from model.backbone import BlenderbotBackbone


@pytest.mark.parametrize("variant", ["blenderbot", "blenderbot_small"])
def test_a_saved_backbone_loads_back_with_the_same_logits(
    variant: str, blenderbot_dir: Path, blenderbot_small_dir: Path, tmp_path: Path
) -> None:
    import keras  # after model, which chose the torch backend

    folder = blenderbot_dir if variant == "blenderbot" else blenderbot_small_dir
    original = model.load(folder, device="cpu").backbone
    inputs = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 2]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "decoder_input_ids": torch.tensor([[1, 9, 10]]),
    }
    path = tmp_path / "blenderbot.keras"
    original.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, BlenderbotBackbone)
    assert restored.config == original.config
    assert [v.path for v in restored.weights] == [v.path for v in original.weights]
    with torch.inference_mode():
        expected = original.call(inputs)
        fresh = BlenderbotBackbone.from_config(original.get_config()).call(inputs)  # not loaded: differs
        got = restored.call(inputs)
    assert not torch.allclose(fresh, expected)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
