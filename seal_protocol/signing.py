"""Ed25519 signing and verification of envelopes, shared by seal and server.

PyNaCl (libsodium) is used on purpose: verification is the server's dominant per-event cost and libsodium
verifies about twice as fast as OpenSSL through ``cryptography`` on the same machine (RECIPES.md).
Keys travel as base64 of the raw 32 bytes. There is no default key anywhere: a device creates its own.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from seal_protocol.envelope import Envelope
from seal_protocol.errors import SignatureError

__all__ = [
    "SigningKey",
    "VerifyKey",
    "generate_signing_key",
    "load_or_create_signing_key",
    "load_signing_key",
    "public_key_b64",
    "sign_bytes",
    "sign_envelope",
    "verify_bytes",
    "verify_envelope",
    "verify_key_from_b64",
]


def generate_signing_key() -> SigningKey:
    return SigningKey.generate()


def public_key_b64(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode("ascii")


def verify_key_from_b64(text: str) -> VerifyKey:
    """The key of ``text``: the raw 32 bytes in standard base64, in its one spelling (44 characters ending in one
    ``=``, unused bits zero); white space around it is ignored."""
    text = text.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"public key is not base64: {exc}") from None
    if len(raw) != 32:
        raise SignatureError(f"public key must be 32 bytes, got {len(raw)}")
    if base64.b64encode(raw).decode("ascii") != text:
        raise SignatureError("public key is not in canonical base64 (44 characters, one '=', unused bits zero)")
    return VerifyKey(raw)


def load_signing_key(path: Path) -> SigningKey:
    try:
        raw = base64.b64decode(path.read_text("ascii").strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{path}: private key is not base64: {exc}") from None
    if len(raw) != 32:
        raise SignatureError(f"{path}: private key must be 32 bytes, got {len(raw)}")
    return SigningKey(raw)


def load_or_create_signing_key(path: Path) -> tuple[SigningKey, bool]:
    """Load the key at ``path`` or create it (mode 0600, created atomically). Returns (key, created)."""
    if path.exists():
        return load_signing_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    write_durably(path, base64.b64encode(bytes(key)) + b"\n")
    return key, True


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) whole or not at all, and so that it survives a power cut: written to a
    new temporary file, fsynced, renamed over ``path``, the directory fsynced. Raises ``OSError`` (no file left)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a stale one may have other permissions: never write into it
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def sign_bytes(key: SigningKey, data: bytes) -> str:
    return key.sign(data).signature.hex()


def verify_bytes(key: VerifyKey, data: bytes, sig_hex: str | None) -> None:
    if not sig_hex:
        raise SignatureError("unsigned")
    try:
        key.verify(data, bytes.fromhex(sig_hex))
    except (BadSignatureError, ValueError, CryptoError):
        raise SignatureError("bad signature") from None


def sign_envelope(envelope: Envelope, key: SigningKey) -> Envelope:
    """A copy of ``envelope`` carrying the signature of its canonical bytes."""
    return envelope.model_copy(update={"sig": sign_bytes(key, envelope.signing_bytes())})


def verify_envelope(envelope: Envelope, key: VerifyKey) -> None:
    """Raise :class:`SignatureError` unless ``envelope.sig`` is ``key``'s signature of its canonical bytes."""
    verify_bytes(key, envelope.signing_bytes(), envelope.sig)
