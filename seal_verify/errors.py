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


def is_library_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic of a library (rfc3161-client, cryptography) raised through pyo3:
    ``pyo3_runtime.PanicException``, a BaseException (so no ``except Exception`` stops it) that no module exports.
    It means an input the library did not foresee, not an interrupt: the check that met it fails."""
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"
