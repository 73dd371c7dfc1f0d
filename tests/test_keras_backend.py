"""Keras imported without torch.compile's tracer (``torch._dynamo``), which is most of its import.

Each check runs in a new interpreter: the test process may have imported Keras or dynamo already.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli import chat_log, offline_env


def python(code: str) -> str:
    """Run ``code`` in a new interpreter with the project importable; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=offline_env(),
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_model_loads_and_answers_without_importing_dynamo(blenderbot_dir: Path) -> None:
    """Loading (float32 and int8) and generating never import ``torch._dynamo``: were it imported,
    ``import keras`` would cost 1.3-1.8 s instead of 0.3 s (model.keras_backend)."""
    out = python(
        f"""
        import sys
        import model
        for dtype in ("float32", "int8"):
            m = model.load({str(blenderbot_dir)!r}, device="cpu", dtype=dtype)
            [[best, *_]] = m.generate([[5, 6, 7, 8]], model.GenerationSettings(num_beams=2, max_length=6))
            assert best.tokens, dtype
        import keras
        assert keras.backend.backend() == "torch"
        print("dynamo" if "torch._dynamo" in sys.modules else "no dynamo")
        """
    )
    assert out.strip() == "no dynamo"


def test_keras_random_is_the_same_before_and_after_dynamo_is_imported() -> None:
    """The functions Keras decorates with ``torch._dynamo.disable()`` run as they are while dynamo
    has never been imported, through the real ``disable`` once it has: ``import torch._dynamo``
    then gives the real module, and ``torch.compile`` of a function that draws from
    ``keras.random`` gives what eager code gives."""
    out = python(
        """
        import sys
        import torch
        from model.keras_backend import keras
        assert "torch._dynamo" not in sys.modules
        before = keras.random.normal((3,), seed=7)
        assert "torch._dynamo" not in sys.modules
        import torch._dynamo
        assert sys.modules["torch._dynamo"] is torch._dynamo and hasattr(torch._dynamo, "reset")
        assert type(torch._dynamo).__name__ == "module"  # the real one, not the stand-in
        after = keras.random.normal((3,), seed=7)
        def draw(x):
            return x + keras.random.normal((3,), seed=7)
        compiled = torch.compile(draw, backend="eager")(torch.zeros(3))
        assert torch.equal(before, after) and torch.equal(compiled, before), (before, after, compiled)
        print("ok")
        """
    )
    assert out.split() == ["ok"]


def test_anything_else_asked_of_the_stand_in_comes_from_the_real_module() -> None:
    """Another ``import torch._dynamo`` while Keras is being imported (another thread) gets the
    stand-in; whatever it asks besides ``disable`` imports the real module, which then replaces it."""
    out = python(
        """
        import sys
        from model.keras_backend import DeferredDynamo
        assert "torch._dynamo" not in sys.modules
        standin = DeferredDynamo()
        sys.modules["torch._dynamo"] = standin
        import torch._dynamo as seen
        assert seen is standin
        assert seen.is_compiling() is False  # answered by the real module
        real = sys.modules["torch._dynamo"]
        assert real is not standin and hasattr(real, "optimize")
        print("ok")
        """
    )
    assert out.split() == ["ok"]


def test_bot_chat_says_keras_came_without_dynamo(tmp_path: Path, blenderbot_dir: Path) -> None:
    """``python -m bot chat`` from a config, the safety classifier off: its DEBUG log says how
    long Keras took and that ``torch._dynamo`` was not imported with it."""
    log = chat_log(tmp_path, blenderbot_dir)
    line = re.search(r"imported the Keras model in [0-9.]+ s \(torch\._dynamo ([a-z ]+)\)", log)
    assert line is not None, log[-3000:]
    assert line.group(1) == "not imported"
