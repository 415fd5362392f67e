"""Errors of the wire contract. Each also inherits the builtin it refines, so callers may catch either."""


class ProtocolError(Exception):
    """Base class of every error raised by ``seal_protocol``."""


class InvalidTopic(ProtocolError, ValueError):
    """A topic string or device id that does not follow ``seal/v1/<device_id>/<kind>``."""


class InvalidEnvelope(ProtocolError, ValueError):
    """Bytes that are not a valid event envelope.

    ``code`` says which check failed, for counting and quarantine: ``oversized``, ``invalid_utf8``,
    ``invalid_json`` or ``invalid_envelope`` (valid JSON that is not the schema).
    """

    def __init__(self, message: str, code: str = "invalid_envelope") -> None:
        super().__init__(message)
        self.code = code


class SignatureError(ProtocolError, ValueError):
    """A signature that is missing, malformed, or does not verify against the given key."""
