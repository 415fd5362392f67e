"""``seal-server broker …`` and the MQTT part of ``seal-server seal …``: accounts, passwords, Mosquitto files."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from server.config import Settings
from server.mosquitto import SERVER_USERNAME, write_private_file
from server.provisioning import (
    AccountKind,
    MqttAccount,
    NewCredentials,
    apply_broker_files,
    create_account,
    rotate_password,
)

Out = Callable[[str], None]


def add_broker_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                        common: argparse.ArgumentParser) -> None:
    broker = commands.add_parser("broker", help="MQTT accounts and Mosquitto files").add_subparsers(
        dest="action", required=True
    )
    broker.add_parser(
        "server-account", parents=[common],
        help="create (or give a new password to) the court server's own MQTT account; the password goes into "
        "[mqtt] password_file",
    )
    broker.add_parser("write-files", parents=[common], help="regenerate Mosquitto's password and ACL files")


def add_password_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt-password-file", type=Path, default=None,
        help="write the seal's new MQTT password into this file (mode 0600) instead of printing it",
    )


def run_broker_command(args: argparse.Namespace, session: Session, settings: Settings, out: Out) -> int:
    if args.action == "server-account":
        if session.get(MqttAccount, SERVER_USERNAME) is None:
            credentials = create_account(session, username=SERVER_USERNAME, kind=AccountKind.SERVER)
        else:
            credentials = rotate_password(session, username=SERVER_USERNAME)
        write_private_file(settings.mqtt.password_file, credentials.password + "\n")
        out(f"MQTT account {SERVER_USERNAME}: password written to {settings.mqtt.password_file}")
    out(apply_broker_files(session, settings.broker))
    return 0


def provision_seal_account(
    session: Session, settings: Settings, *, device_id: str, rotate: bool, password_file: Path | None, out: Out
) -> None:
    """Give a registered seal its MQTT account (or a new password) and hand the password over once."""
    credentials: NewCredentials | None = None
    if session.get(MqttAccount, device_id) is None:
        credentials = create_account(session, username=device_id, kind=AccountKind.SEAL)
    elif rotate:
        credentials = rotate_password(session, username=device_id)
    if credentials is None:
        out(f"MQTT account {device_id} exists (use `seal rotate-password` for a new password)")
    elif password_file is not None:
        write_private_file(password_file, credentials.password + "\n")
        out(f"MQTT password of {device_id} written to {password_file}: copy it to the seal's mqtt-password file")
    else:
        out(f"MQTT password of {device_id} (shown once; put it in the seal's mqtt-password file): "
            f"{credentials.password}")
    out(apply_broker_files(session, settings.broker))
