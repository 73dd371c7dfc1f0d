"""Keras layers of the Blenderbot port, one concept per module."""
