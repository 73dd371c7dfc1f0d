"""Keras on the torch backend, imported here for every module of the model.

``from model.keras_backend import keras`` instead of ``import keras``. The backend is chosen in
:mod:`model` (``KERAS_BACKEND=torch`` unless the environment says otherwise) and checked here.

Keras' torch backend imports ``torch._dynamo`` (torch.compile's tracer) when it is imported, for
one thing: two functions of its own are decorated with ``torch._dynamo.disable()`` (the torch
generators of ``keras.random``, which dynamo cannot trace). That import is most of importing
Keras: in a plain ``pip install`` of blenderd (no scikit-learn, which Keras also imports when it
is there), ``import keras`` after torch took 1.34-1.78 s, 0.25-0.31 s without it (2-core AMD
EPYC, AVX2, collector paused, 4 runs each, alternating), 828 modules fewer. PyTorch itself stopped
importing ``torch._dynamo`` unconditionally for that reason (pytorch/pytorch#162595).

So while Keras is imported, and only if nothing imported ``torch._dynamo`` before,
``sys.modules["torch._dynamo"]`` holds a :class:`DeferredDynamo`: its ``disable`` wraps the
function so that each call runs it as it is while ``torch._dynamo`` has never been imported
(nothing can be tracing it then: ``torch.compile`` imports ``torch._dynamo`` first), and through
the real ``torch._dynamo.disable`` once it has been. Anything else asked of it (another import of
``torch._dynamo`` in another thread meanwhile, say) imports the real module and answers from it.
When Keras is imported, the stand-in leaves ``sys.modules``; a later ``import torch._dynamo``
(``torch.compile``, transformers' models for the safety classifier) imports the real one. The
model itself never imports it: inference runs eagerly.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["DeferredDynamo", "keras"]

F = TypeVar("F", bound=Callable[..., Any])

DYNAMO = "torch._dynamo"


class DeferredDynamo(types.ModuleType):
    """What ``import torch._dynamo`` gives while Keras is imported, when nothing imported it yet."""

    def __init__(self) -> None:
        super().__init__(DYNAMO, "torch._dynamo, deferred while Keras is imported (model.keras_backend)")
        self._lock = threading.Lock()

    def disable(self, fn: F | None = None, recursive: bool = True, **kwargs: Any) -> Any:
        """``torch._dynamo.disable``, as a decorator or called on ``fn``, without importing dynamo."""

        def decorate(fn: F) -> F:
            disabled: Callable[..., Any] | None = None

            @functools.wraps(fn)
            def call(*args: Any, **kw: Any) -> Any:
                nonlocal disabled
                if disabled is None:
                    dynamo = sys.modules.get(DYNAMO)
                    if dynamo is None or dynamo is self:  # never imported: nothing is tracing
                        return fn(*args, **kw)
                    disabled = dynamo.disable(fn, recursive, **kwargs)
                return disabled(*args, **kw)

            return call  # type: ignore[return-value]  # same signature, by functools.wraps

        return decorate if fn is None else decorate(fn)

    def real(self) -> types.ModuleType:
        """The real ``torch._dynamo``, imported now if it is not (and this stand-in retired)."""
        with self._lock:
            if sys.modules.get(DYNAMO) is self:
                del sys.modules[DYNAMO]
            return importlib.import_module(DYNAMO)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


@contextmanager
def deferred_dynamo() -> Iterator[None]:
    """Within: ``torch._dynamo`` is a :class:`DeferredDynamo` unless it (or Keras) was imported."""
    if DYNAMO in sys.modules or "keras" in sys.modules:
        yield
        return
    importlib.import_module("torch")  # the stand-in stands for a submodule of the real torch
    standin = DeferredDynamo()
    sys.modules[DYNAMO] = standin
    try:
        yield
    finally:
        with standin._lock:
            if sys.modules.get(DYNAMO) is standin:
                del sys.modules[DYNAMO]


with deferred_dynamo():
    import keras

if keras.backend.backend() != "torch":  # model/__init__ chose it, unless KERAS_BACKEND said otherwise
    raise ImportError(
        f"blenderd needs Keras on the torch backend; KERAS_BACKEND is {keras.backend.backend()!r}"
    )
