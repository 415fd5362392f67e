"""``seal-server court-key``: create the court's command-signing key if missing and print its public key.

    seal-server court-key --config FILE

The key goes to ``[commands] signing_key_file`` (mode 0600, created atomically; never overwritten). The one line
printed — the base64 public key — is what every seal pins as ``[commands] server_public_key``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from seal_protocol.signing import load_or_create_signing_key, public_key_b64
from server.commands.keys import read_court_key
from server.config import Settings
from server.errors import ConfigError

logger = logging.getLogger(__name__)

Out = Callable[[str], None]


def add_court_key_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    commands.add_parser(
        "court-key",
        parents=[common],
        help="create the court's command-signing key if missing; print its public key for the seals' configs",
    )


def run_court_key(settings: Settings, out: Out) -> int:
    path = settings.commands.signing_key_file
    if path is None:
        raise ConfigError("set [commands] signing_key_file (where the court's signing key is kept) first")
    try:
        key, created = load_or_create_signing_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read or create the court's signing key: {exc.strerror}") from None
    if created:
        logger.info("court command key created in %s (mode 0600); keep it secret and back it up", path)
    else:
        read_court_key(path)  # the running server's checks, and a warning if others may read it
    out(public_key_b64(key))
    return 0
