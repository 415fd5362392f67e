"""The notice key: the court server's own Ed25519 key that signs the token in each notice's QR code.

It is neither the command key (which the seals pin) nor the evidence log's key. ``seal-server init`` and
``seal-server notice-key`` create it; the running server only reads it and never makes one on its own, because a
key made silently in place of a lost one would leave every printed notice unverifiable without anyone noticing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from pathlib import Path

from seal_protocol.errors import SignatureError
from seal_protocol.signing import SigningKey, VerifyKey, load_signing_key, verify_key_from_b64
from server.notices.errors import NoticesUnavailable

logger = logging.getLogger(__name__)

HOW_TO = "create it with `seal-server notice-key --config FILE` (which prints the public key to publish)"


def key_id(key: VerifyKey) -> str:
    """The key's id in a token: the first 4 bytes of SHA-256 of the raw 32-byte public key, in hex."""
    return hashlib.sha256(bytes(key)).digest()[:4].hex()


def public_key_text(key: VerifyKey) -> str:
    """The public key as published: standard base64 of the raw 32 bytes."""
    return base64.b64encode(bytes(key)).decode("ascii")


def read_notice_key(path: Path | None) -> SigningKey:
    """The key in ``path``; raise :class:`NoticesUnavailable` saying what is wrong and how to fix it."""
    if path is None:
        raise NoticesUnavailable(f"notices are not configured: set [notices] key_file and {HOW_TO}")
    try:
        return load_signing_key(path)
    except FileNotFoundError:
        raise NoticesUnavailable(f"the notice key {path} does not exist: {HOW_TO}") from None
    except OSError as exc:
        raise NoticesUnavailable(f"cannot read the notice key {path}: {exc.strerror}") from None
    except (SignatureError, binascii.Error, ValueError) as exc:
        raise NoticesUnavailable(f"{path} is not a notice signing key: {exc}") from None


class NoticeKey:
    """The notice key of a running server, read on first use (so a key made after start-up is picked up), and the
    public keys of its earlier, retired notice keys (``[notices] retired_public_keys``), which only verify."""

    def __init__(self, path: Path | None, retired: tuple[str, ...] = ()) -> None:
        self._path = path
        self._key: SigningKey | None = None
        self._lock = threading.Lock()
        self.retired = tuple(verify_key_from_b64(text) for text in retired)

    def get(self) -> SigningKey:
        with self._lock:
            if self._key is None:
                self._key = read_notice_key(self._path)
                logger.info("notice key %s loaded from %s", key_id(self._key.verify_key), self._path)
            return self._key

    @property
    def verify_key(self) -> VerifyKey:
        return self.get().verify_key

    @property
    def verify_keys(self) -> tuple[VerifyKey, ...]:
        """The keys a notice's token may be signed with: the current one first, then the retired ones."""
        return (self.verify_key, *self.retired)
