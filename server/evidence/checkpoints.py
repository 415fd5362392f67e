"""Checkpoints of the log: a C2SP ``tlog-checkpoint`` body in a C2SP ``signed-note``, signed with the log's own
Ed25519 key (not the court's command key).

The note is::

    <origin>
    <tree size, decimal>
    <root hash, base64>

    — <key name> <base64(key id || signature)>

The signature covers the body (the three lines, each ending in a newline). The key id is the first 4 bytes of
SHA-256(key name || 0x0A || 0x01 || public key) (0x01: Ed25519); a verifier publishes the key as
``<name>+<key id hex>+<base64(0x01 || public key)>`` (the signed-note "vkey" form). The key name is the origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError

from seal_protocol.errors import SignatureError
from seal_protocol.signing import SigningKey, VerifyKey, load_or_create_signing_key
from server.evidence.errors import LogKeyUnavailable, ProofError

logger = logging.getLogger(__name__)

ED25519 = b"\x01"
DASH = "\u2014"


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519 + public_key).digest()[:4]


def verifier_key(name: str, key: VerifyKey) -> str:
    """The published form of the log's public key: ``name+keyid+base64(0x01 || key)``."""
    public = bytes(key)
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(ED25519 + public).decode('ascii')}"


def parse_verifier_key(text: str) -> tuple[str, bytes, VerifyKey]:
    """(name, key id, key) of a :func:`verifier_key`; raise :class:`ProofError` if it is not one."""
    try:
        name, hex_id, b64 = text.strip().split("+", 2)  # a name has no "+", base64 may
        raw = base64.b64decode(b64, validate=True)
        kid = bytes.fromhex(hex_id)
    except (ValueError, binascii.Error):
        raise ProofError("not a signed-note verifier key (name+keyid+base64)") from None
    if raw[:1] != ED25519 or len(raw) != 33 or key_id(name, raw[1:]) != kid:
        raise ProofError("the verifier key is not an Ed25519 key whose id matches its name")
    return name, kid, VerifyKey(raw[1:])


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root_hash).decode('ascii')}\n"


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> str:
    """The signed note of ``checkpoint``, signed by ``key`` under the origin as key name."""
    body = checkpoint.body()
    name = checkpoint.origin
    signature = key.sign(body.encode("utf-8")).signature
    stamp = base64.b64encode(key_id(name, bytes(key.verify_key)) + signature).decode("ascii")
    return f"{body}\n{DASH} {name} {stamp}\n"


def open_checkpoint(note: str, verifier: str) -> Checkpoint:
    """The checkpoint in ``note`` if the key ``verifier`` (:func:`verifier_key`) signed it; else :class:`ProofError`."""
    name, kid, key = parse_verifier_key(verifier)
    body, sep, signatures = note.partition("\n\n")
    if not sep or not body:
        raise ProofError("not a signed note: no blank line after the body")
    body += "\n"
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH or parts[1] != name:
            continue
        try:
            stamp = base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error):
            continue
        if stamp[:4] != kid:
            continue
        try:
            key.verify(body.encode("utf-8"), stamp[4:])
        except (BadSignatureError, ValueError):
            raise ProofError("the checkpoint's signature does not verify") from None
        return _parse_body(body)
    raise ProofError(f"the checkpoint is not signed by {name}")


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or not lines[1].isdigit() or lines[1] != str(int(lines[1])):
        raise ProofError("not a checkpoint: origin, decimal size and base64 root hash expected")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise ProofError("the checkpoint's root hash is not base64") from None
    if len(root) != 32:
        raise ProofError("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(lines[0], int(lines[1]), root)


class LogKey:
    """The log's signing key at ``[evidence] log_key_file``, read — or created, mode 0600 — on first use. Nobody
    pins it beforehand, so the server may make it; publish :meth:`verifier` (``seal-server log-key`` prints it)."""

    def __init__(self, path: Path | None, origin: str) -> None:
        self._path = path
        self.origin = origin
        self._key: SigningKey | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self) -> SigningKey:
        with self._lock:
            if self._key is None:
                self._key = self._load()
            return self._key

    def verifier(self) -> str:
        return verifier_key(self.origin, self.get().verify_key)

    def _load(self) -> SigningKey:
        if self._path is None:
            raise LogKeyUnavailable("the log is not signed: set [evidence] log_key_file")
        try:
            key, created = load_or_create_signing_key(self._path)
        except OSError as exc:
            raise LogKeyUnavailable(f"cannot read or create the log key {self._path}: {exc.strerror}") from None
        except (SignatureError, binascii.Error, ValueError) as exc:
            raise LogKeyUnavailable(f"{self._path} is not a log signing key: {exc}") from None
        if created:
            logger.info("log signing key created in %s (mode 0600); keep it secret and back it up", self._path)
        return key
