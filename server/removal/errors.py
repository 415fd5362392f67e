"""Errors of the removal workflow: each also inherits the server error (and builtin) it refines."""

from __future__ import annotations

from server.errors import Conflict, Invalid, ServerError


class RemovalError(ServerError):
    """Base class of the removal workflow's errors."""


class IllegalTransition(RemovalError, Conflict):
    """An action the request's current state does not allow (the API answers 409 with the current state)."""

    def __init__(self, state: str, action: str, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.action = action


class ProofRefused(RemovalError, Invalid):
    """A proof file that is not what it claims, not a PDF/JPEG/PNG, too large, or one too many (422)."""


class ProofStorageFailed(RemovalError, OSError):
    """A proof file could not be written (a full or failing disk): nothing is filed, try again later (503)."""
