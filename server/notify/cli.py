"""``seal-server notify …``: the webhooks a case's alarms go to.

    seal-server notify add-target --case CASE_NO --role judge|creditor --url URL --config FILE [--secret-file F]
    seal-server notify list --config FILE [--case CASE_NO]
    seal-server notify remove ID --config FILE

A target's own HMAC key is read from ``--secret-file`` (first line) and never printed; without one, the global
``notify.webhook_secret_file`` signs its webhooks, and without either the target is refused.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from server.config import NotifySettings, read_secret_file
from server.notify.outbox import Role
from server.notify.targets import add_target, list_notification_targets, remove_notification_target

Out = Callable[[str], None]


def add_notify_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    notify = commands.add_parser("notify", help="webhooks for alarms").add_subparsers(dest="action", required=True)
    add = notify.add_parser("add-target", parents=[common], help="send a case's alarms to a webhook")
    add.add_argument("--case", dest="case_no", required=True, metavar="CASE_NO")
    add.add_argument("--role", required=True, choices=[role.value for role in Role], help="whom it speaks for")
    add.add_argument("--url", required=True, help="http(s) URL the alarms are POSTed to")
    add.add_argument(
        "--secret-file", type=Path, default=None, help="this target's HMAC key (first line); default: the global one"
    )
    listing = notify.add_parser("list", parents=[common], help="list webhook targets")
    listing.add_argument("--case", dest="case_no", default=None, metavar="CASE_NO", help="only this case's")
    remove = notify.add_parser("remove", parents=[common], help="stop sending alarms to a webhook target")
    remove.add_argument("target_id", metavar="ID", type=int)


def run_notify_command(args: argparse.Namespace, session: Session, out: Out, *, settings: NotifySettings) -> int:
    match args.action:
        case "add-target":
            secret = read_secret_file(args.secret_file, what="webhook secret") if args.secret_file else None
            target = add_target(
                session,
                actor=None,
                settings=settings,
                case_no=args.case_no,
                role=args.role,
                url=args.url,
                secret=secret,
            )
            out(f"notification target {target.id}: alarms of {target.case_no} to the {target.role} at {target.url}")
        case "list":
            for target in list_notification_targets(session, case_no=args.case_no):
                key = "own key" if target.secret is not None else "global key"
                out(f"{target.id}\t{target.case_no}\t{target.role}\t{target.url}\t{key}")
        case "remove":
            remove_notification_target(session, actor=None, target_id=args.target_id)
            out(f"notification target {args.target_id} removed")
        case _:
            raise AssertionError(f"unhandled notify action {args.action!r}")
    return 0
