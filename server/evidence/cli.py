"""``seal-server log-key``: create the Merkle log's signing key if missing and print its public key.

    seal-server log-key --config FILE

The key goes to ``[evidence] log_key_file`` (mode 0600; never overwritten). The one line printed — the signed-note
verifier key ``<origin>+<key id>+<base64 key>`` — is what a court or party pins to check the log's checkpoints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from server.config import Settings
from server.errors import ConfigError
from server.evidence.checkpoints import LogKey
from server.evidence.errors import LogKeyUnavailable


def add_log_key_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    commands.add_parser(
        "log-key", parents=[common], help="create the event log's signing key if missing; print its public key"
    )


def run_log_key(settings: Settings, out: Callable[[str], None]) -> int:
    if settings.evidence.log_key_file is None:
        raise ConfigError("set [evidence] log_key_file (where the log's signing key is kept) first")
    try:
        out(LogKey(settings.evidence.log_key_file, settings.evidence.log_origin).verifier())
    except LogKeyUnavailable as exc:
        raise ConfigError(str(exc)) from None
    return 0
