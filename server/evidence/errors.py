"""Errors of the evidence log: a proof that does not verify, a request for one that cannot exist, a missing log key."""

from __future__ import annotations

from server.errors import ServerError


class ProofError(ServerError, ValueError):
    """A Merkle proof that does not verify, or one asked for sizes or a leaf the tree cannot have."""


class LogKeyUnavailable(ServerError, RuntimeError):
    """Checkpoints cannot be signed: ``[evidence] log_key_file`` is not set or the key cannot be read (503)."""


class CheckpointRefused(ServerError, RuntimeError):
    """The log's key will not sign a checkpoint of the database's tree (503): it would be inconsistent with a
    checkpoint the key signed before (:mod:`server.evidence.signed_record`), or that cannot be checked. ``kind``
    names the reason for the metric: ``smaller`` (the log has fewer leaves than a signed checkpoint), ``forked``
    (another root at a signed size), ``other_log`` (the record is of another origin), ``unreadable``,
    ``unwritable`` (the record), ``damaged`` (a stored checkpoint whose root is not the tree's)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class TimestampFailed(ServerError, RuntimeError):
    """The time-stamping authority gave no token that verifies. ``kind`` names the failure for the metric:
    ``unreachable``, ``http_error``, ``malformed``, ``refused`` (not granted), ``unverified`` or ``roots``
    (``[evidence] tsa_ca_file`` unreadable)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
