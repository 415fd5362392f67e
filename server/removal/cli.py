"""``seal-server removal …``: the debtor's access code, and the removal requests as the court sees them.

    seal-server removal access-code CASE_NO [--rotate] --config FILE   issue (--rotate: replace) the debtor's code
    seal-server removal list --config FILE [--case CASE_NO] [--open]
    seal-server removal show ID --config FILE

The decisions are the judge's and the lifting the officer's, made in the API with their own identities; the
command line issues codes and reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.auth.access_codes import issue_access_code
from server.core.base import utc_now
from server.removal.disarm import seal_progress
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest
from server.removal.state import OPEN_STATES
from server.removal.steps import get_request

Out = Callable[[str], None]


def add_removal_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    removal = commands.add_parser("removal", help="removal requests and the debtor's access code")
    actions = removal.add_subparsers(dest="action", required=True)
    code = actions.add_parser(
        "access-code", parents=[common], help="issue the debtor's access code of a case, or rotate it (shown once)"
    )
    code.add_argument("case_no", metavar="CASE_NO")
    code.add_argument(
        "--rotate", action="store_true", help="replace the case's code (without it, a case that has one is refused)"
    )
    listing = actions.add_parser("list", parents=[common], help="list removal requests, newest first")
    listing.add_argument("--case", dest="case_no", default=None, metavar="CASE_NO", help="only this case's")
    listing.add_argument("--open", action="store_true", help="only requests not yet rejected, cancelled or lifted")
    show = actions.add_parser("show", parents=[common], help="one request: its seals and its history")
    show.add_argument("request_id", metavar="ID", type=int)


def run_removal_command(args: argparse.Namespace, session: Session, out: Out) -> int:
    match args.action:
        case "access-code":
            issued = issue_access_code(session, actor=None, case_no=args.case_no, now=utc_now(), rotate=args.rotate)
            what = "rotated (the old code and its sessions have ended)" if issued.rotated else "issued"
            out(f"access code of case {issued.case_no} {what}; print it for the debtor (shown once):")
            out(f"  案号 Case number: {issued.case_no}")
            out(f"  被执行人查询码 Access code: {issued.code}")
        case "list":
            query = select(RemovalRequest).order_by(RemovalRequest.id.desc())
            if args.case_no is not None:
                query = query.where(RemovalRequest.case_no == args.case_no)
            if args.open:
                query = query.where(RemovalRequest.state.in_([s.value for s in OPEN_STATES]))
            for request in session.scalars(query):
                filed = f"{request.filed_at:%Y-%m-%d %H:%M}Z"
                out(f"{request.id}\t{request.case_no}\t{request.state}\t{request.ground}\t{filed}")
        case "show":
            _show(session, args.request_id, out)
        case _:
            raise AssertionError(f"unhandled removal action {args.action!r}")
    return 0


def _show(session: Session, request_id: int, out: Out) -> None:
    request = get_request(session, request_id=request_id)
    ground = RemovalGround(request.ground)
    out(f"removal request {request.id} of case {request.case_no}: {request.state}")
    out(f"  ground: {ground.label.zh} / {ground.label.en} ({ground.label.article})")
    out(f"  statement: {_one_line(request.statement)}")
    for proof in request.proofs:
        out(f"  proof: {proof.sha256} {proof.media_type} {proof.size} bytes ({_one_line(proof.filename)})")
    for view in request.views:
        out(f"  creditor's view {view.at:%Y-%m-%d %H:%M}Z: {_one_line(view.text)}")
    for seal in seal_progress(session, request, now=utc_now()):
        out(f"  seal {seal.device_id}: {seal.status.value} (command {seal.command_id}, {seal.command_state})")
    for step in request.steps:
        moved = f"{step.from_state or '-'} -> {step.to_state}"
        out(f"  {step.at:%Y-%m-%d %H:%M:%S}Z {step.actor} {step.action}: {moved} {_one_line(step.note)}".rstrip())


def _one_line(text: str) -> str:
    """Text a debtor or creditor wrote, without the control characters that could rewrite a terminal."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:200]
