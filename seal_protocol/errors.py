"""Errors of the wire contract. Each also inherits the builtin it refines, so callers may catch either."""


class ProtocolError(Exception):
    """Base class of every error raised by ``seal_protocol``."""


class InvalidTopic(ProtocolError, ValueError):
    """A topic string or device id that does not follow ``seal/v1/<device_id>/<kind>``."""


class InvalidEnvelope(ProtocolError, ValueError):
    """Bytes that are not a valid event envelope (not UTF-8, not JSON, or not the schema)."""


class SignatureError(ProtocolError, ValueError):
    """A signature that is missing, malformed, or does not verify against the given key."""
