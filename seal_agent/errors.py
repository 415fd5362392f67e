"""Errors of the seal agent. Each also inherits the builtin it refines, so callers may catch either."""

from __future__ import annotations


class SealAgentError(Exception):
    """Base class of every error raised by ``seal_agent``."""


class ConfigError(SealAgentError, ValueError):
    """The configuration file is unreadable or invalid. ``problems`` holds one ``"key: message"`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) or "invalid configuration")


class OutboxError(SealAgentError, OSError):
    """The on-device outbox could not be opened or written."""


class OutboxLocked(OutboxError):
    """Another agent process already uses this outbox (the same ``state_dir``)."""


class AudioError(SealAgentError, RuntimeError):
    """A warning sound could not be loaded."""


class HardwareError(SealAgentError, RuntimeError):
    """A sensor could not be opened (wrong pin, pin in use, no GPIO access)."""


class PublishError(SealAgentError, ConnectionError):
    """The MQTT client refused to take a message."""


class SnapshotTooLarge(SealAgentError, ValueError):
    """A snapshot over the wire limit (:data:`seal_protocol.topics.MAX_SNAPSHOT_BYTES`): it is never queued."""


class InvalidSnapshotHash(SealAgentError, ValueError):
    """A snapshot name is not 64 lowercase hex digits."""


class SnapshotNotFound(SealAgentError, KeyError):
    """No stored snapshot has this hash."""
