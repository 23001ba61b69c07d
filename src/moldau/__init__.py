"""moldau: a Kafka-compatible distributed commit log in Python."""

__version__ = "0.1.0"

from typing import Any


def __getattr__(name: str) -> Any:
    """``moldau.Broker`` without importing the broker for every ``moldau`` use."""
    if name == "Broker":
        from .broker.embedded import Broker

        return Broker
    raise AttributeError(name)
