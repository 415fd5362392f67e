"""``seal-server notice`` and ``seal-server notice-key``: print a seal's notice; make and show the notice key.

    seal-server notice DEVICE_ID -o FILE --config FILE
    seal-server notice-key --config FILE
    seal-server notice-revoke NOTICE_ID --note TEXT --config FILE

``notice`` writes the PDF of the seal's notice (the standing one again, or a new one when its facts changed) and
prints the notice's id and the URL in its QR code. ``notice-key`` creates ``[notices] key_file`` if it is missing
(mode 0600; never overwritten) and prints the public key — standard base64 of the raw 32 bytes — for whoever wants
to verify notices themselves (``docs/notice.md``). ``notice-revoke`` revokes a notice, saying why.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from seal_protocol.signing import load_or_create_signing_key
from server.config import Settings
from server.core.base import utc_now
from server.core.files import move_into_place
from server.errors import ConfigError
from server.notices.errors import NoticesUnavailable
from server.notices.facts import court_day
from server.notices.keys import NoticeKey, key_id, public_key_text, read_notice_key
from server.notices.printing import print_notice
from server.notices.service import revoke_notice

logger = logging.getLogger(__name__)

Out = Callable[[str], None]


def add_notice_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    notice = commands.add_parser(
        "notice",
        parents=[common],
        help="write the PDF of a seal's notice (查封公告) with its court-signed QR code",
        description="Write the A4 notice of the seal's case with a QR code signed with the notice key. The same "
        "notice is printed again while its facts are unchanged; otherwise a new one replaces the older ones.",
    )
    notice.add_argument("device_id", metavar="DEVICE_ID", help="the seal, bound to the case the notice is about")
    notice.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="where to write the PDF")
    commands.add_parser(
        "notice-key",
        parents=[common],
        help="create the notice-signing key if missing; print its public key for verifiers",
    )
    revoke = commands.add_parser(
        "notice-revoke",
        parents=[common],
        help="revoke a notice (its page then says it no longer stands); unbinding its seal revokes it already",
    )
    revoke.add_argument("notice_id", metavar="NOTICE_ID", type=int, help="the notice's number (公告编号)")
    revoke.add_argument("--note", required=True, help="why (kept in the audit log)")


def run_notice(args: argparse.Namespace, settings: Settings, session: Session, out: Out) -> int:
    try:
        printed = print_notice(
            session,
            actor=None,
            device_id=args.device_id,
            key=NoticeKey(settings.notices.key_file),
            settings=settings.notices,
            now=utc_now(),
        )
    except NoticesUnavailable as exc:
        raise ConfigError(str(exc)) from None
    _write_atomically(args.output, printed.pdf)
    notice = printed.issued.notice
    state = "new notice" if printed.issued.new else "notice printed again"
    last_day = court_day(notice.expires_at - timedelta(microseconds=1))  # it expires as the court's next day begins
    out(f"wrote {args.output}: {state} {notice.id} of case {notice.case_no}, valid through {last_day:%Y-%m-%d}")
    out(printed.url)
    return 0


def run_notice_revoke(args: argparse.Namespace, session: Session, out: Out) -> int:
    notice = revoke_notice(session, actor=None, notice_id=args.notice_id, now=utc_now(), note=args.note)
    out(f"notice {notice.id} of seal {notice.device_id} (case {notice.case_no}) revoked")
    return 0


def run_notice_key(settings: Settings, out: Out) -> int:
    path = settings.notices.key_file
    if path is None:
        raise ConfigError("set [notices] key_file (where the notice-signing key is kept) first")
    try:
        key, created = load_or_create_signing_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read or create the notice key: {exc.strerror}") from None
    if created:
        logger.info("notice key created in %s (mode 0600); keep it secret and back it up", path)
    else:
        try:
            key = read_notice_key(path)
        except NoticesUnavailable as exc:
            raise ConfigError(str(exc)) from None
    logger.info("notice key id %s", key_id(key.verify_key))
    out(public_key_text(key.verify_key))
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    """Write the notice durably (flushed, renamed, its directory flushed) before its record is committed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        move_into_place(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the notice: {exc.strerror}") from None
