"""`python -m bot download` against a fake Hugging Face hub, then `python -m bot chat` offline."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tests.cli import offline_env, run, tiny, write_config
from tests.fakes.hub import FakeHub

REPO = "facebook/blenderbot-400M-distill"  # the default model.source


async def test_download_then_every_start_is_offline(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> None:
    """The real download code (huggingface_hub against the hub's HTTP endpoints, here on
    127.0.0.1): the model's files into data_dir/models, the classifier's base model's config and
    tokenizer files into data_dir/safety. Detoxify's checkpoint itself comes from GitHub, which
    no fake can stand in for, so it is placed where its download puts it. Then the chat starts
    with the network refused and answers."""
    checkpoint, config_folder = detoxify_files
    hub = FakeHub()
    hub.add(REPO, blenderbot_dir)
    hub.add("bert-base-uncased", config_folder)
    await hub.start()
    try:
        safety = tmp_path / "data" / "safety"
        safety.mkdir(parents=True)
        shutil.copy(checkpoint, safety / "toxic_original-c1212f89.ckpt")
        raw = tiny(
            tmp_path,
            blenderbot_dir,
            model={"source": REPO},
            safety={"classifier": {"enabled": True, "model": "original"}},
        )
        config = write_config(tmp_path, raw)
        online = offline_env(HF_ENDPOINT=f"http://127.0.0.1:{hub.port}", HF_HOME=str(tmp_path / "hf"))
        result = await asyncio.to_thread(run, "--config", str(config), "download", cwd=tmp_path, env=online)
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        await hub.stop()
    models = tmp_path / "data" / "models" / "facebook--blenderbot-400M-distill"
    assert (models / "config.json").is_file() and (models / "model.safetensors").is_file()
    assert f"{REPO}/model.safetensors" in hub.downloads
    assert (safety / "bert-base-uncased" / "vocab.txt").read_bytes() == (
        config_folder / "vocab.txt"
    ).read_bytes()
    assert "bert-base-uncased/config.json" in hub.downloads

    shutil.rmtree(tmp_path / "hf")  # nothing is read from the Hugging Face cache either
    offline = offline_env(HF_HOME=str(tmp_path / "hf"))  # the hub refused
    chat = await asyncio.to_thread(
        run, "--config", str(config), "chat", cwd=tmp_path, env=offline, stdin="Hello, how are you?\n"
    )
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-3000:]
    assert "Retrying" not in chat.stderr and "Could not reach" not in chat.stderr, chat.stderr[-3000:]
