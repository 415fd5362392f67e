"""Errors of the offline verifier; each also inherits the builtin it refines."""

from __future__ import annotations


class VerifyError(Exception):
    """Base class of every error raised by ``seal_verify``."""


class BundleUnreadable(VerifyError, ValueError):
    """The file is not a zip, or a member cannot be read."""


class NoteError(VerifyError, ValueError):
    """A signed note, verifier key or checkpoint that is malformed or whose signature does not verify."""


class ProofError(VerifyError, ValueError):
    """A Merkle proof that does not verify or cannot exist."""
