"""Keras layers of the Blenderbot port, one concept per module (Keras from model.keras_backend)."""
