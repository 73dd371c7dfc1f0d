from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest

from tests.checkpoints import build_blenderbot, build_blenderbot_small


@pytest.fixture(scope="session")
def blenderbot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_blenderbot(tmp_path_factory.mktemp("blenderbot"))


@pytest.fixture(scope="session")
def blenderbot_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_blenderbot_small(tmp_path_factory.mktemp("blenderbot_small"))


@pytest.fixture(scope="session", params=["blenderbot", "blenderbot_small"])
def checkpoint_dir(request: pytest.FixtureRequest, blenderbot_dir: Path, blenderbot_small_dir: Path) -> Path:
    return blenderbot_dir if request.param == "blenderbot" else blenderbot_small_dir


@pytest.fixture(scope="session")
def detoxify_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.checkpoints import build_detoxify

    return build_detoxify(tmp_path_factory.mktemp("detoxify"))


@pytest.fixture(scope="session")
def heavy_blenderbot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bigger random Blenderbot whose generation takes long enough to be caught mid-way."""
    shape = {
        "d_model": 256,
        "encoder_ffn_dim": 1024,
        "decoder_ffn_dim": 1024,
        "decoder_layers": 6,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
    }
    return build_blenderbot(tmp_path_factory.mktemp("heavy"), shape=shape)
