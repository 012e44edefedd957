"""Every error the project raises on purpose, in one place.

All derive from :class:`SynapseError`, so a caller can catch the family at once.
"""
from __future__ import annotations


class SynapseError(Exception):
    """Base class of all synapse-stream errors."""


class ConfigError(SynapseError):
    """A setting is missing, out of range or inconsistent."""


class DataError(SynapseError):
    """An input file (pool, seeds) cannot be used: missing columns, no positives, bad encoding..."""


class EmbedderError(SynapseError):
    """The embedding model cannot be loaded or cannot encode the input."""


class PostIndexError(SynapseError):
    """The post index was used wrongly (wrong dimension, unknown id, corrupt file)."""


class MessageError(SynapseError):
    """A message from a topic failed validation. ``reason`` is a short, stable, human-readable cause."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnknownDetectorError(MessageError):
    """A message names a detector this deployment does not run."""

    def __init__(self, detector: str) -> None:
        super().__init__("unknown_detector", repr(detector)[:200])


class OracleError(SynapseError):
    """An oracle could not label a request."""


class LLMError(SynapseError):
    """An LLM endpoint could not be used: bad key, unreachable, rate-limited for too long, unusable answer.

    Messages never contain the API key.
    """
