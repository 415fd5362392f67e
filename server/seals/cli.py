"""``seal-server court …``, ``case …``, ``seal …`` and ``broker …``: courts, cases, seals, their MQTT accounts and
Mosquitto's files.

    seal-server court add CODE NAME --config FILE [--phone ..] [--address ..]
    seal-server case add CASE_NO --config FILE [--court NAME] [--judge ..] [--judge-phone ..] [--address ..]
                                               [--property ..] [--ruling ..] [--expires YYYY-MM-DD]
    seal-server seal add DEVICE_ID --case CASE_NO --public-key B64 --config FILE [--location ..] [--replace-key]
    seal-server seal rotate-password DEVICE_ID --config FILE [--mqtt-password-file F]
    seal-server seal disable DEVICE_ID --config FILE
    seal-server broker server-account --config FILE
    seal-server broker write-files --config FILE
    seal-server broker check --config FILE [--wait S]

Database work happens first and is committed; only then are passwords handed over and the broker's files
rewritten, so the broker never holds an account the database does not.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session

from server.config import Settings
from server.core.db import in_session
from server.seals.broker_check import check_broker
from server.seals.broker_files import SERVER_USERNAME, write_private_file
from server.seals.cases import add_case, add_court
from server.seals.enrolment import OnMoved, enrol_seal, new_seal_password
from server.seals.provisioning import NewCredentials, apply_broker_files, disable_seal_account, server_account
from server.seals.seal_keys import court_public_keys

Out = Callable[[str], None]


def add_seal_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    case = commands.add_parser("case", help="enforcement cases").add_subparsers(dest="action", required=True)
    case_add = case.add_parser("add", parents=[common], help="register a case")
    case_add.add_argument("case_no", metavar="CASE_NO", help="案号, e.g. '(2021)苏0214执1234号'")
    case_add.add_argument(
        "--court",
        default="",
        help="the name of the court the number names, e.g. 无锡市滨湖区人民法院 (needed the first time)",
    )
    case_add.add_argument("--judge", default="", help="the enforcement judge")
    case_add.add_argument("--judge-phone", default="", help="the judge's telephone number, printed on the notice")
    case_add.add_argument("--address", default="", help="where the sealed property is")
    case_add.add_argument("--property", default="", help="what is sealed (查封财产), printed on the notice")
    case_add.add_argument(
        "--ruling",
        default="",
        help="the enforcement ruling (执行裁定书) the seizure rests on, e.g. '(2021)苏0214执1234号之一', printed on "
        "the notice",
    )
    case_add.add_argument(
        "--expires", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD", help="the seizure's last day"
    )

    court = commands.add_parser("court", help="courts").add_subparsers(dest="action", required=True)
    court_add = court.add_parser("add", parents=[common], help="register a court by its code and name")
    court_add.add_argument("code", metavar="CODE", help="法院代字 as case numbers carry it, e.g. 苏0214")
    court_add.add_argument("name", metavar="NAME", help="e.g. 无锡市滨湖区人民法院")
    court_add.add_argument("--phone", default="", help="the court's telephone number, printed on notices")
    court_add.add_argument("--address", default="", help="the court's address")

    seal = commands.add_parser("seal", help="seals").add_subparsers(dest="action", required=True)
    seal_add = seal.add_parser("add", parents=[common], help="register a seal and bind it to a case (or rebind it)")
    seal_add.add_argument("device_id", metavar="DEVICE_ID", help="the seal's id, also its MQTT username")
    seal_add.add_argument("--case", required=True, dest="case_no", help="the case to bind the seal to")
    seal_add.add_argument("--public-key", required=True, help="the seal's Ed25519 public key, base64")
    seal_add.add_argument("--location", default=None, help="where the seal is installed")
    seal_add.add_argument(
        "--replace-key",
        action="store_true",
        help="accept a new public key for an already registered seal (refused once the court stores its events: "
        "register a re-provisioned device under a new device id)",
    )
    _add_password_file_option(seal_add)
    seal_rotate = seal.add_parser("rotate-password", parents=[common], help="give a seal a new MQTT password")
    seal_rotate.add_argument("device_id", metavar="DEVICE_ID")
    _add_password_file_option(seal_rotate)
    seal_disable = seal.add_parser(
        "disable",
        parents=[common],
        help="disable a seal's MQTT account: the broker refuses it from its reload on (rotate-password enables it "
        "again, with a new password)",
    )
    seal_disable.add_argument("device_id", metavar="DEVICE_ID")

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
    broker_check = broker.add_parser(
        "check",
        parents=[common],
        help="log in to the broker as the court server ([mqtt]) and check that [broker] pid_file names it: exit "
        "status 0 if it runs and account changes reload it, 1 otherwise (with the reason)",
    )
    broker_check.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="try again for up to S seconds while the broker cannot be reached (one just started)",
    )


def run_seal_command(args: argparse.Namespace, settings: Settings, out: Out, *, on_moved: OnMoved) -> int:
    match args.command, args.action:
        case "case", "add":
            _case_add(args, settings, out)
        case "court", "add":
            _court_add(args, settings, out)
        case "seal", "add":
            _seal_add(args, settings, out, on_moved)
        case "seal", "rotate-password":
            _seal_rotate(args, settings, out)
        case "seal", "disable":
            _seal_disable(args, settings, out)
        case "broker", "server-account":
            _server_account(settings, out)
            _sync_broker(settings, out)
        case "broker", "write-files":
            _sync_broker(settings, out)
        case "broker", "check":
            checked = check_broker(settings, wait_s=args.wait)
            for line in checked.lines:
                out(line)
            return 0 if checked.ok else 1
        case _:
            raise AssertionError(f"unhandled command {args.command!r} {args.action!r}")
    return 0


def _case_add(args: argparse.Namespace, settings: Settings, out: Out) -> None:
    def add(session: Session) -> None:
        case = add_case(
            session,
            actor=None,
            case_no=args.case_no,
            court=args.court,
            judge=args.judge,
            judge_phone=args.judge_phone,
            address=args.address,
            sealed_property=args.property,
            ruling_no=args.ruling,
            seizure_expires_on=args.expires,
        )
        out(f"case {case.case_no} added ({case.court_name})")

    in_session(settings.database_url, add)


def _court_add(args: argparse.Namespace, settings: Settings, out: Out) -> None:
    def add(session: Session) -> None:
        court = add_court(session, actor=None, code=args.code, name=args.name, phone=args.phone, address=args.address)
        out(f"court {court.code} added: {court.name}")

    in_session(settings.database_url, add)


def _seal_add(args: argparse.Namespace, settings: Settings, out: Out, on_moved: OnMoved) -> None:
    court_keys = court_public_keys(settings)

    def enrol(session: Session) -> NewCredentials | None:
        seal, credentials = enrol_seal(
            session,
            actor=None,
            device_id=args.device_id,
            case_no=args.case_no,
            public_key=args.public_key,
            location=args.location,
            replace_key=args.replace_key,
            on_moved=on_moved,
            reserved={settings.mqtt.username},
            court_keys=court_keys,
        )
        out(f"seal {seal.device_id} bound to case {seal.case_no}")
        return credentials

    credentials = in_session(settings.database_url, enrol)
    hand_over(credentials, device_id=args.device_id, password_file=args.mqtt_password_file, out=out)
    _sync_broker(settings, out)


def _seal_rotate(args: argparse.Namespace, settings: Settings, out: Out) -> None:
    credentials = in_session(
        settings.database_url,
        lambda session: new_seal_password(
            session, actor=None, device_id=args.device_id, reserved={settings.mqtt.username}
        ),
    )
    hand_over(credentials, device_id=args.device_id, password_file=args.mqtt_password_file, out=out)
    _sync_broker(settings, out)


def _seal_disable(args: argparse.Namespace, settings: Settings, out: Out) -> None:
    disabled = in_session(
        settings.database_url,
        lambda session: disable_seal_account(
            session, actor=None, device_id=args.device_id, reserved={settings.mqtt.username}
        ),
    )
    out(f"MQTT account {args.device_id} " + ("disabled" if disabled else "was disabled already"))
    _sync_broker(settings, out)


def _server_account(settings: Settings, out: Out) -> None:
    password_file = settings.mqtt.password_file
    credentials, adopted = in_session(
        settings.database_url, lambda session: server_account(session, actor=None, password_file=password_file)
    )
    if adopted:
        out(f"MQTT account {SERVER_USERNAME}: created with the password in {password_file}")
    else:
        write_private_file(password_file, credentials.password + "\n")
        out(f"MQTT account {SERVER_USERNAME}: password written to {password_file}")


def _sync_broker(settings: Settings, out: Out) -> None:
    """After the accounts are committed: rewrite the broker's files (if configured) and reload it."""
    out(in_session(settings.database_url, lambda session: apply_broker_files(session, settings.broker)))


def _add_password_file_option(parser: argparse.ArgumentParser) -> None:
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
