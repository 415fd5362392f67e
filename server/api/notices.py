"""Seal notices (查封公告): the PDF for the court's staff, and the public verdict on a notice's token with the key
that signs them.

``GET /api/seals/{device_id}/notice.pdf`` issues the notice if its facts changed since the last one (so it writes,
though a GET: printing the same notice twice must give the same paper, and it does). The verdict and the key are
public, like the page the QR code opens (:mod:`server.api.notice_page`). A clerk may revoke a notice; unbinding its
seal revokes it too (:mod:`server.removal.release`).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, seal_with
from server.api.params import RowIdPath
from server.api.routing import ValidatedRoute
from server.api.schemas import NO_NUL
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.context import ServerContext
from server.core.base import utc_now
from server.core.db import session_scope
from server.notices.keys import key_id, public_key_text
from server.notices.page import outdated_text, refusal_text
from server.notices.printing import print_notice
from server.notices.service import NoticeCheck, Revocation, check_notice, get_notice, revoke_notice
from server.notices.token import MAX_TOKEN_CHARS, Refusal
from server.seals.models import Seal

router = APIRouter(tags=["notices"], route_class=ValidatedRoute)

PDF: Responses = {
    200: {"content": {"application/pdf": {}}, "description": "The notice, an A4 PDF."},
    404: {"description": "No such seal, or not of one of your cases"},
    409: {
        "description": "The seal is bound to no case, its case's seizure has expired, the case lacks a fact every "
        "notice prints (the ruling, the court's phone, the property, its address, the seizure's last day: each named), "
        "or a fact has a character the notice's font cannot draw (named as U+XXXX with its field)"
    },
    503: {"description": "The notice key, the public address or the CJK font is not configured"},
}
TokenQuery = Annotated[
    str, Query(min_length=1, max_length=MAX_TOKEN_CHARS, description="The token of a notice's QR code.")
]


class NoticeSealState(BaseModel):
    armed: bool | None = Field(
        description="Armed (true) or disarmed, from the seal's signed events of the binding the notice was issued "
        "under; null: unknown, the seal is no longer bound under it (its state elsewhere is not told), or the case is "
        "being lifted (armed_hidden)."
    )
    armed_at: datetime | None = Field(
        description="Always null: the time of the seal's latest signed word would tell anyone when it last spoke."
    )
    still_bound: bool = Field(
        description="Whether the seal is still bound to the notice's case, by the binding it had when issued."
    )
    armed_hidden: bool = Field(
        False,
        description="The armed state is withheld (armed is null): the case is `lifting`, and the seal may stand "
        "disarmed before an officer comes — not to be told to anyone at the door.",
    )


class NoticePrinted(BaseModel):
    id: int
    issued_at: datetime
    expires_at: datetime
    facts: dict[str, Any] = Field(description="The facts exactly as printed (their SHA-256 is in the token).")


class NoticeOutdated(BaseModel):
    term_ended_on: date | None = Field(description="The seizure's term, as the court records it now, ended that day.")
    changed: list[str] = Field(description="The printed facts that are no longer the court's record (their names).")
    text: str = Field(description="What changed, in Chinese / English.")


class NoticeVerdict(BaseModel):
    authentic: bool = Field(description="An authentic notice of this court that still stands: current, not expired.")
    genuine: bool = Field(
        description="Issued by this court (its key signed the token and the notice is on record), whether or not it "
        "still stands: a genuine but outdated, replaced, revoked or expired notice is genuine, not authentic."
    )
    reason: Refusal | None = Field(description="Why not, if not.")
    reason_text: str | None = Field(description="The reason in Chinese / English.")
    outdated: NoticeOutdated | None = Field(
        description="For reason `outdated`: what changed since the notice was printed."
    )
    notice: NoticePrinted | None = Field(description="The notice, if the court signed it and has it on record.")
    seal: NoticeSealState | None
    case_status: str | None = Field(description="The status of the notice's case now.")


class NoticeRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)] = Field(
        description="Why the notice is revoked (kept in the audit log; the notice's page says it was revoked)."
    )


class NoticeRevoked(BaseModel):
    id: int
    device_id: str
    case_no: str
    revoked_at: datetime
    reason: Revocation = Field(description="lifted, unbound (its seal was taken off the case) or revoked.")
    note: str


class RetiredNoticeKey(BaseModel):
    public_key: str = Field(description="Standard base64 of the raw 32-byte public key.")
    key_id: str = Field(description="The first 4 bytes of SHA-256(public key), hex: the token's `k`.")


class NoticeKeyPublic(BaseModel):
    algorithm: str = "Ed25519"
    public_key: str = Field(description="Standard base64 of the raw 32-byte public key.")
    key_id: str = Field(description="The first 4 bytes of SHA-256(public key), hex: the token's `k`.")
    retired: list[RetiredNoticeKey] = Field(
        default_factory=list,
        description="The court's earlier notice keys, replaced but still standing behind the notices they signed.",
    )


@router.get("/seals/{device_id}/notice.pdf", response_class=Response, responses=PDF)
def seal_notice(
    seal: Annotated[Seal, Depends(seal_with(Permission.NOTICE_PRINT))], user: CurrentUser, context: ContextDep
) -> Response:
    """The seal's printed notice (查封公告): an A4 PDF with its court-signed QR code."""
    return notice_pdf(context, user, seal.device_id)


def notice_pdf(context: ServerContext, user: User, device_id: str) -> Response:
    """The notice of ``device_id`` (whose printing ``user`` may do) as the PDF response; the seal page's button
    gets it through a page route, whose refusals (a fact the notice cannot print, say) are pages."""
    with session_scope(context.session_factory) as session:  # a writing session: a notice may be issued
        printed = print_notice(
            session,
            actor=user,
            device_id=device_id,
            key=context.notice_key,
            settings=context.settings.notices,
            now=utc_now(),
        )
        name = f"notice-{printed.issued.notice.id}-{device_id}.pdf"
    headers = {"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"}
    return Response(printed.pdf, media_type="application/pdf", headers=headers)


@router.post(
    "/notices/{notice_id}/revoke",
    responses={
        404: {"description": "No such notice, or not of your cases"},
        409: {"description": "Revoked already"},
    },
)
def revoke(notice_id: RowIdPath, body: NoticeRevoke, user: CurrentUser, session: SessionDep) -> NoticeRevoked:
    """Revoke a notice, saying why (clerk): its page and its verdict then say it no longer stands."""
    notice = get_notice(session, notice_id=notice_id)
    access.check_object_visible(  # who prints notices knows they exist (403); the parties are told of none (404)
        session, user, notice.case_no, Permission.NOTICE_PRINT, act=Permission.NOTICE_REVOKE, what=f"notice {notice_id}"
    )
    revoke_notice(session, actor=user, notice_id=notice.id, now=utc_now(), note=body.note)
    session.commit()
    assert notice.revoked_at is not None and notice.revoked_reason is not None
    return NoticeRevoked(
        id=notice.id,
        device_id=notice.device_id,
        case_no=notice.case_no,
        revoked_at=notice.revoked_at,
        reason=Revocation(notice.revoked_reason),
        note=notice.revoked_note or "",
    )


@router.get("/notices/verify")
def verify_notice(token: TokenQuery, session: SessionDep, context: ContextDep) -> NoticeVerdict:
    """Whether a notice's token is an authentic notice of this court, with what the notice printed (public)."""
    check = check_notice(session, token=token, keys=context.notice_key.verify_keys, now=utc_now())
    return verdict(check)


@router.get("/notices/key")
def notice_key(context: ContextDep) -> NoticeKeyPublic:
    """The public key that verifies the notices' tokens, and those of the court's retired notice keys (public)."""
    key = context.notice_key.verify_key
    retired = [RetiredNoticeKey(public_key=public_key_text(k), key_id=key_id(k)) for k in context.notice_key.retired]
    return NoticeKeyPublic(public_key=public_key_text(key), key_id=key_id(key), retired=retired)


def verdict(check: NoticeCheck) -> NoticeVerdict:
    printed = None
    if check.notice is not None and check.facts is not None:
        notice = check.notice
        printed = NoticePrinted(
            id=notice.id, issued_at=notice.issued_at, expires_at=notice.expires_at, facts=asdict(check.facts)
        )
    state = None
    if check.still_bound is not None:
        state = NoticeSealState(
            armed=check.seal_armed,
            armed_at=check.seal_armed_at,
            still_bound=check.still_bound,
            armed_hidden=check.seal_state_hidden,
        )
    outdated = None
    if check.outdated is not None:
        outdated = NoticeOutdated(
            term_ended_on=check.outdated.term_ended_on,
            changed=list(check.outdated.changed),
            text=" / ".join(outdated_text(check.outdated)),
        )
    return NoticeVerdict(
        authentic=check.authentic,
        genuine=check.genuine,
        reason=check.refusal,
        reason_text=" / ".join(refusal_text(check.refusal)) if check.refusal is not None else None,
        outdated=outdated,
        notice=printed,
        seal=state,
        case_status=check.case_status,
    )
