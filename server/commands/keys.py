"""The court's command-signing key: a file made by ``seal-server court-key``; there is no default key anywhere.

The server never creates the key on its own: a key the seals do not pin would only get every command refused.
"""

from __future__ import annotations

import binascii
import logging
import stat
import threading
from pathlib import Path

from seal_protocol.errors import SignatureError
from seal_protocol.signing import SigningKey, load_signing_key
from server.config import CommandSettings
from server.errors import CommandsUnavailable

logger = logging.getLogger(__name__)

HOW_TO = (
    "create it with `seal-server court-key --config FILE` and put the printed public key into each seal's "
    "[commands] server_public_key"
)


def read_court_key(path: Path | None) -> SigningKey:
    """The key in ``path``; raise :class:`CommandsUnavailable` saying what is wrong and how to fix it."""
    if path is None:
        raise CommandsUnavailable(f"commands are not configured: set [commands] signing_key_file and {HOW_TO}")
    try:
        key = load_signing_key(path)
    except FileNotFoundError:
        raise CommandsUnavailable(f"the court's signing key {path} does not exist: {HOW_TO}") from None
    except OSError as exc:
        raise CommandsUnavailable(f"cannot read the court's signing key {path}: {exc.strerror}") from None
    except (SignatureError, binascii.Error, ValueError) as exc:
        raise CommandsUnavailable(f"{path} is not a court signing key: {exc}") from None
    warn_if_readable_by_others(path)
    return key


def warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the court's signing key %s is accessible to other users (mode %o): chmod 600 it", path, stat.S_IMODE(mode)
        )


class CourtKey:
    """The signing key of a running server, read on first use (so a key made after start-up is picked up)."""

    def __init__(self, settings: CommandSettings) -> None:
        self._path = settings.signing_key_file
        self._key: SigningKey | None = None
        self._lock = threading.Lock()

    def get(self) -> SigningKey:
        with self._lock:
            if self._key is None:
                self._key = read_court_key(self._path)
                logger.info("court command key loaded from %s", self._path)
            return self._key
