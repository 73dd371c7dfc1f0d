"""Safety: the phrase matcher, the real Detoxify class on a tiny trained checkpoint, and the core's use."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import model
from bot.app import App
from bot.context import ContextBuilder
from bot.core import ChatCore
from bot.messages import Incoming
from bot.pipeline import Pipeline
from bot.worker import ModelWorker
from memory import ConversationKey, MemoryStore
from memory.engine import default_url
from safety import PhraseMatcher, SafetyChecker, SafetyError
from tests.checkpoints import CLEAN, TOXIC
from tests.cli import offline_env, one_error, run, tiny, write_config
from tests.helpers import ScriptedModel, tiny_config
from tests.test_bad_env import base_config, one_line_error, run_bot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def matcher() -> PhraseMatcher:
    return PhraseMatcher.default()


@pytest.mark.parametrize(
    "text",
    [
        "fuck off",
        "FUCK",
        "you fuuuucking idiot",
        "f*ck this",
        "sh1t happens",
        "what an @sshole",
        "motherfuckers",
        "mother-fucker",
        "bitches",
        "shitty day",
        "You're a c*nt",
    ],
)
def test_matcher_catches_variants_and_case(matcher: PhraseMatcher, text: str) -> None:
    assert matcher.find(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United won",
        "please assess the situation",
        "a classic film",
        "Essex is a county",
        "my glasses",
        "the bass guitar",
        "a cocktail party",
        "Shitake mushrooms",
        "therapist",
        "analysis",
        "the passes were great",
        "cumulative sums",
        "Hancock",
        "Penistone",
    ],
)
def test_matcher_has_no_false_hits_on_innocent_words(matcher: PhraseMatcher, text: str) -> None:
    assert matcher.find(text) is None


def test_extra_and_allow_lists() -> None:
    custom = PhraseMatcher.default(extra=["frobnicate"], allow=["damn"])
    assert custom.find("do not frobnicate it") is not None
    assert custom.find("damn it") is None


@pytest.fixture
async def checker(detoxify_files: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[SafetyChecker]:
    config = tiny_config(tmp_path, tmp_path, safety=safety_section(detoxify_files))
    c = SafetyChecker.from_config(config.safety, tmp_path)
    await c.start()
    yield c
    await c.stop()


def safety_section(files: tuple[Path, Path], **classifier: Any) -> dict[str, Any]:
    return {
        "classifier": {
            "enabled": True,
            "checkpoint": str(files[0]),
            "config_folder": str(files[1]),
            **classifier,
        }
    }


async def test_real_detoxify_scores_toxic_and_clean_apart(checker: SafetyChecker) -> None:
    verdicts = await checker.classify(TOXIC + CLEAN)
    assert all(not v.safe and v.stage == "classifier" for v in verdicts[: len(TOXIC)])
    assert all(v.safe for v in verdicts[len(TOXIC) :])
    assert set(verdicts[0].scores) == {
        "toxicity",
        "severe_toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
    }
    assert checker.classifier is not None and checker.classifier.batches[-1] == len(TOXIC + CLEAN)


async def test_checks_that_arrive_together_share_a_batch(checker: SafetyChecker) -> None:
    assert checker.classifier is not None
    before = len(checker.classifier.batches)
    await asyncio.gather(*(checker.classify([t]) for t in CLEAN))
    assert len(checker.classifier.batches) - before < len(CLEAN)


async def test_offline_loading_needs_no_network(detoxify_files: tuple[Path, Path], tmp_path: Path) -> None:
    """The checkpoint names bert-base-uncased, as the real ones do; with the config folder set it
    loads with the hub switched off (HF_HUB_OFFLINE=1 in a fresh process)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "data"), "safety": safety_section(detoxify_files)})
    )
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bot.config import load_config\n"
        "from safety import SafetyChecker\n"
        f"c = load_config(Path({str(config)!r}))\n"
        "s = SafetyChecker.from_config(c.safety, c.data_dir)\n"
        "asyncio.run(s.start())\n"
        "print('LOADED')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "LOADED" in result.stdout, result.stderr[-2000:]


async def test_thresholds_come_from_the_config(detoxify_files: tuple[Path, Path], tmp_path: Path) -> None:
    lenient = tiny_config(tmp_path, tmp_path, safety=safety_section(detoxify_files, threshold=0.999))
    strict = tiny_config(
        tmp_path, tmp_path, safety=safety_section(detoxify_files, threshold=0.999, thresholds={"insult": 0.3})
    )
    for config, expect_safe in ((lenient, True), (strict, False)):
        c = SafetyChecker.from_config(config.safety, tmp_path)
        await c.start()
        [verdict] = await c.classify([TOXIC[0]])
        assert verdict.safe is expect_safe, verdict.describe()
        await c.stop()


def test_fail_closed_when_the_classifier_cannot_load(tmp_path: Path, blenderbot_dir: Path) -> None:
    classifier = {"checkpoint": str(tmp_path / "missing.ckpt"), "config_folder": str(tmp_path)}
    config = base_config(tmp_path, blenderbot_dir, safety={"classifier": classifier})
    result = run_bot(config, tmp_path, "chat")
    line = one_line_error(result)
    assert result.stdout == ""  # nothing was answered
    assert "safety classifier could not be loaded" in line and "or enabled: false to run without it" in line


def test_running_without_the_classifier_is_said_at_start(tmp_path: Path, blenderbot_dir: Path) -> None:
    result = run_bot(base_config(tmp_path, blenderbot_dir), tmp_path, "chat")
    assert result.returncode == 0
    assert "running WITHOUT the toxicity classifier" in result.stderr


@pytest.fixture
async def safe_core(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> AsyncIterator[tuple[ChatCore, ScriptedModel]]:
    config = tiny_config(tmp_path / "data", blenderbot_dir, safety=safety_section(detoxify_files))
    memory = await MemoryStore.open(default_url(config.data_dir))
    overrides = config.model.generation.overrides()
    scripted = ScriptedModel(model.load(blenderbot_dir, device="cpu", generation=overrides), [CLEAN[0]])
    worker = ModelWorker(lambda: scripted)
    await worker.start()
    safety = SafetyChecker.from_config(config.safety, config.data_dir)
    await safety.start()
    contexts = ContextBuilder.for_model(worker.model, config.persona, config.memory)
    yield ChatCore(Pipeline(config, memory, worker, contexts, safety=safety)), scripted
    await worker.stop()
    await safety.stop()
    await memory.close()


async def ask(core: ChatCore, text: str) -> str:
    reply = await core.handle(Incoming("test", "c", "u", text))
    assert reply is not None
    return reply.text


async def test_toxic_input_never_reaches_the_model(safe_core: tuple[ChatCore, ScriptedModel]) -> None:
    core, scripted = safe_core
    assert await ask(core, TOXIC[1]) == core.config.safety.blocked_input_reply  # the classifier's catch
    assert await ask(core, "fuck you") == core.config.safety.blocked_input_reply  # the matcher's catch
    assert scripted.calls == []
    assert await ask(core, CLEAN[1]) == CLEAN[0]
    assert len(scripted.inputs) == 1
    tokenizer = scripted.inner.tokenizer
    assert isinstance(tokenizer, model.tokenizer.BlenderbotTokenizer)
    decoded = tokenizer.decode(scripted.inputs[0])
    assert "worthless" not in decoded and "fuck" not in decoded  # blocked turns never enter a context
    exported = await core.memory.export("test", "u")
    flags = [(t["text"], t["blocked"]) for t in exported["conversations"][0]["turns"] if t["role"] == "user"]
    assert flags == [(TOXIC[1], True), ("fuck you", True), (CLEAN[1], False)]
    blocks = core.metrics.render().decode()
    assert 'blenderd_safety_blocks_total{direction="input",stage="classifier"} 1.0' in blocks
    assert 'blenderd_safety_blocks_total{direction="input",stage="wordlist"} 1.0' in blocks


async def test_toxic_best_reply_is_replaced_by_the_next_safe_candidate(
    safe_core: tuple[ChatCore, ScriptedModel],
) -> None:
    core, scripted = safe_core
    scripted.texts = [TOXIC[1], "shit happens", CLEAN[6], CLEAN[7]]
    assert await ask(core, CLEAN[2]) == CLEAN[6]
    turns = await core.memory.context_turns(ConversationKey("test", "c", "u"))
    assert [t.text for t in turns] == [CLEAN[2], CLEAN[6]]


async def test_all_candidates_unsafe_gives_the_change_of_topic_reply(
    safe_core: tuple[ChatCore, ScriptedModel],
) -> None:
    core, scripted = safe_core
    scripted.texts = [TOXIC[2], "fuck that", TOXIC[3]]
    assert await ask(core, CLEAN[3]) == core.config.safety.fallback_reply
    assert 'direction="reply"' in core.metrics.render().decode()


async def test_app_starts_with_the_classifier(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> None:
    app = App(tiny_config(tmp_path / "data", blenderbot_dir, safety=safety_section(detoxify_files)))
    await app.start()
    reply = await app.core.handle(Incoming("test", "c", "u", TOXIC[0]))
    assert reply is not None and reply.text == app.config.safety.blocked_input_reply
    await app.stop()


async def test_app_refuses_to_start_without_it(tmp_path: Path, blenderbot_dir: Path) -> None:
    app = App(
        tiny_config(
            tmp_path / "data",
            blenderbot_dir,
            safety={
                "classifier": {
                    "enabled": True,
                    "checkpoint": str(tmp_path / "nope.ckpt"),
                    "config_folder": str(tmp_path),
                }
            },
        )
    )
    with pytest.raises(SafetyError, match="does not exist"):
        await app.start()


DOWNLOADED = "toxic_original-c1212f89.ckpt"  # the name Detoxify's "original" downloads under


def _as_downloaded(tmp_path: Path, detoxify_files: tuple[Path, Path], *, hf_cache: bool) -> Path:
    """What a first start left with the network on, before this version: the checkpoint (its
    model_type the hub's bert-base-uncased) in data_dir/safety, and (``hf_cache``) the base
    model's config and tokenizer files in the Hugging Face cache, where transformers put them."""
    checkpoint, config_folder = detoxify_files
    safety = tmp_path / "data" / "safety"
    safety.mkdir(parents=True)
    shutil.copy(checkpoint, safety / DOWNLOADED)
    if hf_cache:
        repo = tmp_path / "hf" / "hub" / "models--bert-base-uncased"
        sha = "86b5e0934494bd15c9632b12f734a8a67f723594"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(sha)
        shutil.copytree(config_folder, repo / "snapshots" / sha)
    return safety


def test_a_downloaded_classifier_starts_without_the_network(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> None:
    """Downloaded once, the classifier never asks the hub again: `python -m bot chat` with the
    network off (refused) answers at once, with nothing about the hub on stderr (transformers
    used to look up five optional files with retries: two minutes of warnings per start). The
    base model's files are copied into data_dir/safety, so the next start needs no Hugging Face
    cache; a moved data dir is pointed at again."""
    safety = _as_downloaded(tmp_path, detoxify_files, hf_cache=True)
    raw = tiny(tmp_path, blenderbot_dir, safety={"classifier": {"enabled": True, "model": "original"}})
    config = write_config(tmp_path, raw)
    env = offline_env(HF_HOME=str(tmp_path / "hf"))
    for attempt in ("first", "no hub cache", "moved"):
        if attempt == "no hub cache":
            shutil.rmtree(tmp_path / "hf")
        if attempt == "moved":
            (tmp_path / "data").rename(tmp_path / "moved")
            raw["data_dir"] = str(tmp_path / "moved")
            config = write_config(tmp_path, raw)
            safety = tmp_path / "moved" / "safety"
        result = run(
            "--config", str(config), "chat", cwd=tmp_path, env=env, stdin=f"{CLEAN[0]}\n", timeout=60
        )
        assert result.returncode == 0 and result.stdout.strip(), (attempt, result.stderr[-3000:])
        for hub in ("Retrying", "Could not reach", "127.0.0.1", "huggingface_hub"):
            assert hub not in result.stderr, (attempt, result.stderr[-3000:])
        assert (safety / "bert-base-uncased" / "config.json").is_file()
        assert (safety / f"{DOWNLOADED}.base").read_text().strip() == str(
            (safety / "bert-base-uncased").resolve()
        )


def test_a_downloaded_classifier_without_its_base_files_is_one_line_offline(
    tmp_path: Path, blenderbot_dir: Path, detoxify_files: tuple[Path, Path]
) -> None:
    """The checkpoint is there but its base model's files are neither in data_dir/safety nor in
    the Hugging Face cache, and the hub is refused: one line naming both and the fix, exit 2."""
    _as_downloaded(tmp_path, detoxify_files, hf_cache=False)
    raw = tiny(tmp_path, blenderbot_dir, safety={"classifier": {"enabled": True, "model": "original"}})
    env = offline_env(HF_HOME=str(tmp_path / "hf"))
    result = run("--config", str(write_config(tmp_path, raw)), "chat", cwd=tmp_path, env=env, stdin="hi\n")
    line = one_error(result)
    assert "base model bert-base-uncased cannot be downloaded" in line
    assert "cannot be reached" in line and "Connection refused" in line
    assert "checkpoint and config_folder" in line
