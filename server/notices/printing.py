"""Printing a seal's notice: the one action behind ``seal-server notice`` and ``GET /api/seals/{id}/notice.pdf``.

Everything the PDF needs from the set-up (the notice key, the public address, the font) is checked before a notice
is issued, so a server that cannot print records no notice either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.audit.service import Actor
from server.config import NoticeSettings
from server.notices.errors import NoticesUnavailable
from server.notices.facts import court_day
from server.notices.fonts import find_font, register_font
from server.notices.keys import NoticeKey
from server.notices.pdf import PrintedNotice, check_printable, render_notice_pdf
from server.notices.service import IssuedNotice, check_complete, issue_notice, notice_facts
from server.seals.registry import get_seal

NOTICE_PATH = "/notice/"


@dataclass(frozen=True)
class PrintedPdf:
    issued: IssuedNotice
    url: str
    pdf: bytes


def notice_url(public_base_url: str | None, token: str) -> str:
    """``<public_base_url>/notice/<token>``; :class:`NoticesUnavailable` without a public address."""
    if not public_base_url:
        raise NoticesUnavailable(
            "set [notices] public_base_url (the address the public reaches this server at) before printing notices: "
            "their QR code must lead to it"
        )
    return public_base_url + NOTICE_PATH + token


def print_notice(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    key: NoticeKey,
    settings: NoticeSettings,
    now: datetime,
) -> PrintedPdf:
    """The PDF of the seal's notice (:func:`~server.notices.service.issue_notice`: the standing one or a new one);
    :class:`~server.notices.errors.FactsMissing`, before any notice is issued, if the case lacks a fact every
    notice prints; :class:`~server.notices.errors.UnprintableFact` if a fact has a character the font cannot draw."""
    notice_url(settings.public_base_url, "")  # refuse before issuing anything
    font = register_font(find_font(settings.font_file, settings.font_index))
    facts = notice_facts(session, seal=get_seal(session, device_id=device_id))
    check_complete(facts)
    check_printable(facts, font)
    signing_key = key.get()
    issued = issue_notice(
        session,
        actor=actor,
        device_id=device_id,
        key=signing_key,
        default_validity=timedelta(days=settings.default_validity_days),
        now=now,
    )
    url = notice_url(settings.public_base_url, issued.token)
    printed = PrintedNotice(issued.facts, issued.notice.id, court_day(issued.notice.issued_at), url)
    return PrintedPdf(issued, url, render_notice_pdf(printed, font))
