"""Keras layers of the Blenderbot port, one concept per module."""

import keras

if keras.backend.backend() != "torch":  # model/__init__ chose it, unless KERAS_BACKEND said otherwise
    raise ImportError(
        f"blenderd needs Keras on the torch backend; KERAS_BACKEND is {keras.backend.backend()!r}"
    )
