"""The one error hierarchy of newsstream.

- :class:`NewsstreamError` is the root.
- :class:`TransientError`: an outage or overload (Kafka, Milvus, Redis, a feed server). Callers
  retry with capped exponential backoff and apply backpressure; data is never dropped or sent
  to the DLQ because of one.
- :class:`InvalidInput`: data that can never succeed. In the worker it is poison
  (:class:`InvalidMessage`, sent to the DLQ); in the API it becomes a clear 4xx
  (:class:`InvalidRequest`); in the producer a named fetch or parse outcome (:class:`FeedError`).
- :class:`ConfigurationError`: the settings or the environment are wrong; raised at start with a
  message that says what was expected and what was found.

Unknown exceptions are not caught by these names: they crash loudly.
"""

from __future__ import annotations


class NewsstreamError(Exception):
    """Root of every error newsstream raises on purpose."""


class TransientError(NewsstreamError):
    """A dependency is unavailable or overloaded; retry later, never drop data."""


class InvalidInput(NewsstreamError):
    """Input that can never succeed, whatever is retried."""


class InvalidMessage(InvalidInput):
    """A Kafka message that breaks the Article contract (poison: goes to the DLQ)."""


class InvalidRequest(InvalidInput):
    """An API request that breaks the API's rules (answered with a 4xx)."""


class FeedError(InvalidInput):
    """A feed could not be fetched or parsed; ``kind`` is one of a closed set of names."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class ConfigurationError(NewsstreamError):
    """The configuration is wrong; the message says what was expected and what was found."""
