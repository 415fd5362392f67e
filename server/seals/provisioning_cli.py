"""``seal-server broker …`` and the MQTT part of ``seal-server seal …``: accounts, passwords, Mosquitto files.

Database work happens first and is committed; only then are passwords handed over and the broker's files
rewritten, so the broker never holds an account the database does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from server.seals.broker_files import write_private_file
from server.seals.provisioning import NewCredentials

Out = Callable[[str], None]


def add_broker_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    broker = commands.add_parser("broker", help="MQTT accounts and Mosquitto files").add_subparsers(
        dest="action", required=True
    )
    broker.add_parser(
        "server-account",
        parents=[common],
        help="create the court server's own MQTT account with the password in [mqtt] password_file (a new one "
        "if that file is absent), or give the existing account a new password there; then write Mosquitto's files",
    )
    broker.add_parser("write-files", parents=[common], help="regenerate Mosquitto's password and ACL files")


def add_password_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt-password-file",
        type=Path,
        default=None,
        help="write the seal's new MQTT password into this file (mode 0600) instead of printing it",
    )


def hand_over(credentials: NewCredentials | None, *, device_id: str, password_file: Path | None, out: Out) -> None:
    """Show a new password once, or write it into ``password_file``; say so when there is none."""
    if credentials is None:
        out(f"MQTT account {device_id} exists (use `seal rotate-password` for a new password)")
    elif password_file is not None:
        write_private_file(password_file, credentials.password + "\n")
        out(f"MQTT password of {device_id} written to {password_file}: copy it to the seal's mqtt-password file")
    else:
        out(
            f"MQTT password of {device_id} (shown once; put it in the seal's mqtt-password file): "
            f"{credentials.password}"
        )
