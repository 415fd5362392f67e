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
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import seal_verify.notes as notes
from seal_protocol.errors import SignatureError
from seal_protocol.signing import SigningKey, VerifyKey, load_or_create_signing_key
from seal_verify.errors import NoteError
from seal_verify.notes import DASH, ED25519, key_id
from server.evidence.errors import LogKeyUnavailable, ProofError

logger = logging.getLogger(__name__)


def verifier_key(name: str, key: VerifyKey) -> str:
    """The published form of the log's public key: ``name+keyid+base64(0x01 || key)``."""
    public = bytes(key)
    return f"{name}+{key_id(name, public).hex()}+{base64.b64encode(ED25519 + public).decode('ascii')}"


def parse_verifier_key(text: str) -> tuple[str, bytes, VerifyKey]:
    """(name, key id, key) of a :func:`verifier_key`, read by :func:`seal_verify.notes.parse_key`; raise
    :class:`ProofError` if it is not one."""
    try:
        key = notes.parse_key(text)
    except NoteError as exc:
        raise ProofError(str(exc)) from None
    return key.name, key.key_id, key.key


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


def open_checkpoint(note: bytes | str, verifier: str) -> Checkpoint:
    """The checkpoint in ``note`` if the key ``verifier`` (:func:`verifier_key`) signed it; else :class:`ProofError`.

    The server serves checkpoints and never reads them back; this is for whoever checks what it serves (the tests),
    with the one parser of signed notes and checkpoints, seal-verify's (:mod:`seal_verify.notes`, C2SP clause by
    clause), so the server is held to what a third party's verifier accepts."""
    raw = note.encode("utf-8", "surrogatepass") if isinstance(note, str) else note
    try:
        opened = notes.open_checkpoint(raw, notes.parse_key(verifier))
    except NoteError as exc:
        raise ProofError(str(exc)) from None
    return Checkpoint(opened.origin, opened.size, opened.root)


class LogKey:
    """The log's signing key at ``[evidence] log_key_file``, read — or created, mode 0600 — on first use. Nobody
    pins it beforehand, so the server may make it; publish :meth:`verifier` (``seal-server log-key`` prints it)."""

    def __init__(self, path: Path | None, origin: str) -> None:
        if (problem := notes.key_name_problem(origin)) is not None:  # [evidence] log_origin refuses it first
            raise ValueError(f"the log's origin {origin!r} cannot name its key in a signed note: {problem}")
        self._path = path
        self.origin = origin
        self._key: SigningKey | None = None
        self._lock = threading.Lock()

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
