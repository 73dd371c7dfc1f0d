"""Long-term memory through `python -m bot chat` and `admin`, as a person uses it: the DEBUG model
input line shows a fact stated long before, /memory lists and forgets, /memory off stops it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import run, tiny, write_config

FILLER = [
    "The weather has been so strange lately, sunny in the morning and stormy every afternoon.",
    "I spent most of yesterday cleaning the garage and found a box of old photographs.",
    "We watched a documentary about deep sea creatures and the glowing fish were amazing.",
    "The bakery on the corner started selling sourdough and the line goes around the block.",
    "My neighbour keeps practising the trumpet at seven in the morning, every single day.",
    "Traffic on the bridge was terrible because of the roadworks, it took forty minutes.",
    "I finally finished that thousand piece puzzle of the mountain lake, it took two weeks.",
    "The library had a sale and I came home with a stack of paperbacks for almost nothing.",
]


def _inputs(log: str) -> list[str]:
    return [line for line in log.splitlines() if "model input for console/console" in line]


def test_a_fact_from_long_ago_reaches_the_model_and_the_person_controls_it(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    log = tmp_path / "blenderd.log"
    raw = tiny(tmp_path, blenderbot_dir, logging={"level": "DEBUG", "message_text": True, "file": str(log)})
    config = str(write_config(tmp_path, raw))
    lines = ["Hi! My name is Ada and I have a dog named Rex.", *FILLER, "Do you remember my name?", "/memory"]
    chat = run("chat", "--config", config, cwd=tmp_path, stdin="\n".join(lines) + "\n", timeout=300)
    assert chat.returncode == 0, chat.stderr
    inputs = _inputs(log.read_text())
    assert len(inputs) == len(FILLER) + 2
    probe = inputs[-1]
    assert "Hi! My name is Ada" not in probe  # the turn itself has left the 128-token window ...
    assert "my name is Ada" in probe  # ... and the fact came back, as an earlier turn of the person
    assert "dog named Rex" not in probe  # not relevant to the question
    assert "1. my name is Ada 2. I have a dog named Rex" in " ".join(chat.stdout.split())

    chat = run(
        "chat",
        "--config",
        config,
        cwd=tmp_path,
        stdin="/memory forget 1\n/memory\n/memory off\nDo you remember my dog?\n/memory on\nHow is my dog?\n",
    )
    assert chat.returncode == 0, chat.stderr
    assert "Done, I forgot: my name is Ada" in chat.stdout
    after = chat.stdout.split("Done, I forgot: my name is Ada")[1]
    assert "1. I have a dog named Rex" in after and "my name is Ada" not in after
    off, on = _inputs(log.read_text())[-2:]
    assert "dog named Rex" not in off  # /memory off: nothing recalled
    assert "I have a dog named Rex" in on

    export = run(
        "admin", "export", "--platform", "console", "--user", "local", "--config", config, cwd=tmp_path
    )
    document = json.loads(export.stdout)
    assert document["memory"] == "on"
    assert [f["fact"] for f in document["conversations"][0]["remembered"]] == ["I have a dog named Rex"]
    forget = run(
        "admin", "forget", "--platform", "console", "--user", "local", "--config", config, cwd=tmp_path
    )
    assert forget.returncode == 0
    chat = run("chat", "--config", config, cwd=tmp_path, stdin="/memory\n")
    assert "I don't remember anything about you in this chat yet" in chat.stdout


def test_memory_disabled_in_the_config(tmp_path: Path, blenderbot_dir: Path) -> None:
    log = tmp_path / "blenderd.log"
    raw = tiny(
        tmp_path,
        blenderbot_dir,
        memory={"enabled": False},
        logging={"level": "DEBUG", "message_text": True, "file": str(log)},
    )
    config = str(write_config(tmp_path, raw))
    stdin = "My name is Ada.\n" + "\n".join(FILLER) + "\nDo you remember my name?\n/memory\n"
    chat = run("chat", "--config", config, cwd=tmp_path, stdin=stdin, timeout=300)
    assert chat.returncode == 0, chat.stderr
    assert "my name is Ada" not in _inputs(log.read_text())[-1]
    assert "Long-term memory is turned off on this bot" in chat.stdout


def test_blocked_and_care_messages_are_never_remembered(tmp_path: Path, blenderbot_dir: Path) -> None:
    config = str(write_config(tmp_path, tiny(tmp_path, blenderbot_dir)))
    lines = [
        "I will kill you. My name is Bob.",
        "I want to die. I live in Oslo.",
        "/memory",
        "My name is Ada.",
        "/memory",
    ]
    stdin = "\n".join(lines) + "\n"
    chat = run("chat", "--config", config, cwd=tmp_path, stdin=stdin)
    assert chat.returncode == 0, chat.stderr
    first, second = (
        chat.stdout.split("Here is what I remember")[0],
        chat.stdout.split("Here is what I remember")[1],
    )
    assert "I don't remember anything about you in this chat yet" in first  # blocked, then a care reply
    assert "1. my name is Ada" in second and "Bob" not in second and "Oslo" not in second
