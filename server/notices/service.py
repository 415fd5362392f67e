"""Issuing notices and checking their tokens: the service functions the API and the CLI both call.

A seal's notice is issued for the facts the paper prints (:class:`~server.notices.facts.NoticeFacts`). Asked again
while those facts, the seal's case and the token's key are unchanged and the token has not expired, the same
notice is printed again (the same id and, Ed25519 being deterministic, the same token): downloading a notice twice
must not make the first copy on the door worthless. When the facts changed (a new judge's phone, a renewed
seizure, …), a new notice is issued and supersedes the older ones of the seal, whose pages then say so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol.signing import SigningKey, VerifyKey
from server.audit.service import Actor, record_audit
from server.errors import Conflict, Invalid, NotFound
from server.notices.errors import FactsMissing
from server.notices.facts import NoticeFacts, court_day, end_of_court_day, missing_facts
from server.notices.keys import key_id
from server.notices.models import Notice
from server.notices.token import NoticeClaims, Refusal, sign_token, verify_token
from server.seals.cases import get_case
from server.seals.models import Case, CaseStatus, Seal, SealBinding
from server.seals.registry import get_seal


class Revocation(StrEnum):
    """Why a notice was revoked."""

    LIFTED = "lifted"  # the seizure was lifted: the seals were removed on site
    UNBOUND = "unbound"  # its seal was taken off the case by hand
    REVOKED = "revoked"  # a clerk revoked it


@dataclass(frozen=True)
class IssuedNotice:
    """A notice ready to print: its row, its token, and whether it was issued just now (else printed again)."""

    notice: Notice
    facts: NoticeFacts
    token: str
    new: bool


@dataclass(frozen=True)
class Outdated:
    """Why a genuine notice, neither revoked nor replaced and its seal still bound, no longer says what the court's
    record says now: the seizure's term (as recorded now) ended, or facts it prints changed since."""

    term_ended_on: date | None = None  # the last day of the term as recorded now, when that day is over
    changed: tuple[str, ...] = ()  # the printed facts (NoticeFacts field names) that differ from the record now


@dataclass(frozen=True)
class NoticeCheck:
    """What the public page and ``/api/notices/verify`` say about a token. ``facts`` are shown only when the
    court's key signed the token and the court has the notice on record (also when it expired, was replaced or is
    outdated): :attr:`genuine` then, whether or not it still stands (:attr:`authentic`)."""

    refusal: Refusal | None
    detail: str = ""
    notice: Notice | None = None
    facts: NoticeFacts | None = None
    seal_armed: bool | None = None
    seal_armed_at: datetime | None = None
    still_bound: bool | None = None
    case_status: str | None = None
    outdated: Outdated | None = None
    #: The seal's armed state is withheld: its case is ``lifting`` (the seal may stand disarmed before an officer
    #: comes), and the public page must not tell a passer-by that the door is unguarded. The court's pages show it.
    seal_state_hidden: bool = False

    @property
    def authentic(self) -> bool:
        """A genuine notice that still stands: current, not expired, its seal bound under it."""
        return self.refusal is None

    @property
    def genuine(self) -> bool:
        """Issued by this court: its key signed the token and the court has the notice on record as signed."""
        return self.facts is not None


def notice_facts(session: Session, *, seal: Seal) -> NoticeFacts:
    """The facts a notice of ``seal`` prints now; :class:`Conflict` if the seal is bound to no case."""
    if seal.case_no is None:
        raise Conflict(
            f"封条 {seal.device_id} 未绑定任何案件，无可公示的内容。 / "
            f"seal {seal.device_id!r} is bound to no case: there is nothing to give notice of"
        )
    case = get_case(session, case_no=seal.case_no)
    court = case.court_row
    return NoticeFacts(
        court=court.name if court is not None else "",
        court_phone=court.phone if court is not None else "",
        case_no=case.case_no,
        judge=case.judge,
        judge_phone=case.judge_phone,
        sealed_on=court_day(_bound_at(session, seal)).isoformat(),
        property=case.sealed_property,
        address=case.address,
        seizure_expires_on=case.seizure_expires_on.isoformat() if case.seizure_expires_on else None,
        device_id=seal.device_id,
        ruling_no=case.ruling_no,
    )


def check_complete(facts: NoticeFacts) -> None:
    """:class:`~server.notices.errors.FactsMissing` naming the facts every notice prints that ``facts`` lacks."""
    missing = missing_facts(facts)
    if missing:
        raise FactsMissing(facts.case_no, missing)


def issue_notice(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    key: SigningKey,
    default_validity: timedelta,
    now: datetime,
) -> IssuedNotice:
    """The seal's notice for its current facts: the standing one of its current binding (audited
    ``notice.reprint``), or a new one (audited ``notice.issue``) that supersedes the others. :class:`Conflict` if
    the seal is bound to no case, its seizure has expired, or the case lacks a fact every notice prints
    (:class:`~server.notices.errors.FactsMissing`: a standing notice printed without it is not printed again)."""
    seal = get_seal(session, device_id=device_id)
    facts = notice_facts(session, seal=seal)
    check_complete(facts)
    case = get_case(session, case_no=facts.case_no)
    digest = facts.sha256().hex()
    kid = key_id(key.verify_key)
    now = now.replace(microsecond=0)
    standing = _standing(session, device_id)
    for notice in standing:
        same = (notice.case_no, notice.facts_sha256, notice.key_id) == (facts.case_no, digest, kid)
        if same and notice.expires_at > now and _bound_under(session, notice, seal)[0]:
            details = {"notice_id": notice.id, "case_no": notice.case_no}
            record_audit(
                session, actor=actor, action="notice.reprint", target=device_id, case_no=notice.case_no, details=details
            )
            return IssuedNotice(notice, facts, token_of(notice, key), new=False)
    if case.seizure_expires_on is not None:
        expires_at = end_of_court_day(case.seizure_expires_on)
        if expires_at <= now:
            raise Conflict(
                f"案件 {case.case_no} 的查封期限已于 {case.seizure_expires_on} 届满，请先续封。 / "
                f"the seizure of case {case.case_no} expired on {case.seizure_expires_on}: renew it first"
            )
    else:
        expires_at = now + default_validity
    notice = Notice(
        device_id=device_id,
        case_no=facts.case_no,
        issued_at=now,
        issued_by=actor.id if actor is not None else None,
        facts=facts.canonical().decode("utf-8"),
        facts_sha256=digest,
        key_id=kid,
        expires_at=expires_at,
    )
    session.add(notice)
    session.flush()
    for old in standing:
        old.superseded_at, old.superseded_by = now, notice.id
    details = {
        "notice_id": notice.id,
        "case_no": notice.case_no,
        "facts_sha256": digest,
        "expires_at": expires_at.isoformat(),
        "supersedes": [old.id for old in standing],
    }
    record_audit(session, actor=actor, action="notice.issue", target=device_id, case_no=notice.case_no, details=details)
    return IssuedNotice(notice, facts, token_of(notice, key), new=True)


def revoke_notice(
    session: Session,
    *,
    actor: Actor | None,
    notice_id: int,
    now: datetime,
    note: str,
    reason: Revocation = Revocation.REVOKED,
) -> Notice:
    """Mark a notice revoked, with why (its page then says it is not authentic, and why); audited
    ``notice.revoke``. :class:`Conflict` if it was revoked already, :class:`Invalid` without a note."""
    if not note.strip():
        raise Invalid("请说明撤销公示的理由。 / say why the notice is revoked")
    notice = get_notice(session, notice_id=notice_id, for_update=True)
    if notice.revoked_at is not None:
        raise Conflict(
            f"公示 {notice_id} 已于 {notice.revoked_at.isoformat()} 撤销。 / "
            f"notice {notice_id} was revoked at {notice.revoked_at.isoformat()}"
        )
    _revoke(session, notice, actor=actor, now=now, reason=reason, note=note)
    return notice


def get_notice(session: Session, *, notice_id: int, for_update: bool = False) -> Notice:
    notice = session.get(Notice, notice_id, with_for_update=for_update or None)
    if notice is None:
        raise NotFound(f"unknown notice {notice_id}")
    return notice


def revoke_seal_notices(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    case_no: str,
    now: datetime,
    reason: Revocation,
    note: str = "",
) -> list[int]:
    """Revoke every standing notice of the seal for ``case_no`` (its binding there ended); return their ids."""
    query = select(Notice).where(Notice.device_id == device_id, Notice.case_no == case_no, Notice.revoked_at.is_(None))
    notices = list(session.scalars(query.order_by(Notice.id).with_for_update()))
    for notice in notices:
        _revoke(session, notice, actor=actor, now=now, reason=reason, note=note)
    return [notice.id for notice in notices]


def _revoke(
    session: Session, notice: Notice, *, actor: Actor | None, now: datetime, reason: Revocation, note: str
) -> None:
    notice.revoked_at, notice.revoked_by = now, actor.id if actor is not None else None
    notice.revoked_reason, notice.revoked_note = reason.value, note
    session.flush()
    details = {"notice_id": notice.id, "case_no": notice.case_no, "reason": reason.value, "note": note}
    record_audit(
        session, actor=actor, action="notice.revoke", target=notice.device_id, case_no=notice.case_no, details=details
    )


def token_of(notice: Notice, key: SigningKey) -> str:
    claims = NoticeClaims(
        notice_id=notice.id,
        device_id=notice.device_id,
        case_no=notice.case_no,
        issued_at=notice.issued_at,
        expires_at=notice.expires_at,
        facts_sha256=bytes.fromhex(notice.facts_sha256),
        key_id=notice.key_id,
    )
    return sign_token(claims, key)


def check_notice(session: Session, *, token: str, keys: Sequence[VerifyKey], now: datetime) -> NoticeCheck:
    """The verdict on ``token``: its signature by one of the court's notice ``keys`` and its expiry
    (:func:`verify_token`), then the court's record of it."""
    checked = verify_token(token, keys, now=now)
    claims = checked.claims
    if claims is None:
        return NoticeCheck(checked.refusal, checked.detail)
    notice = session.get(Notice, claims.notice_id)
    if notice is None or not _matches(notice, claims):
        return NoticeCheck(Refusal.UNKNOWN, "the court has no such notice on record")
    facts = NoticeFacts.from_json(notice.facts)
    if hashlib.sha256(notice.facts.encode("utf-8")).digest() != claims.facts_sha256:
        return NoticeCheck(Refusal.UNKNOWN, "the court's record of the notice does not match it")
    refusal, detail = checked.refusal, checked.detail
    seal = session.scalar(select(Seal).where(Seal.device_id == notice.device_id))
    case = session.scalar(select(Case).where(Case.case_no == notice.case_no))
    still_bound, bound_at = _bound_under(session, notice, seal)
    lifted = case is not None and case.status in (CaseStatus.LIFTED, CaseStatus.CLOSED)
    outdated = None
    if notice.revoked_at is not None:
        lifted = notice.revoked_reason == Revocation.LIFTED
        refusal = Refusal.LIFTED if lifted else Refusal.REVOKED
        detail = f"revoked on {court_day(notice.revoked_at)}"
        if notice.revoked_note:
            detail += f": {notice.revoked_note}"
    elif notice.superseded_at is not None:
        refusal, detail = Refusal.SUPERSEDED, f"replaced by notice {notice.superseded_by}"
    elif not still_bound:  # the binding ended without the notice revoked (unbind_seal alone), or a later one began
        refusal = Refusal.LIFTED if lifted else Refusal.REVOKED
        detail = "the seal is no longer bound to the notice's case by the binding the notice was issued under"
    elif refusal is None and seal is not None and case is not None:
        outdated = _outdated(session, notice, seal=seal, case=case, now=now)
        if outdated is not None:
            refusal, detail = Refusal.OUTDATED, _outdated_detail(outdated)
    # The armed state only of the binding the notice was issued under, and only as told by an event of that binding:
    # an old paper must not tell the state of its seal in another case (or before it sealed this one).
    armed = None
    hidden = bool(still_bound) and case is not None and CaseStatus(case.status).hides_armed_state
    if still_bound and not hidden and seal is not None and seal.armed_at is not None:
        # a seal stamps its events to the millisecond: an event of the binding's first millisecond counts
        if bound_at is None or seal.armed_at >= bound_at.replace(microsecond=bound_at.microsecond // 1000 * 1000):
            armed = seal.armed
    return NoticeCheck(
        refusal,
        detail,
        notice=notice,
        facts=facts,
        seal_armed=armed,
        # Not the time: the seal's heartbeats say whether it is armed, and the time of the latest would tell anyone
        # at the door (the debtor too) when the seal last spoke — whether it is offline, or whether jamming it worked.
        seal_armed_at=None,
        still_bound=still_bound,
        case_status=case.status if case is not None else None,
        outdated=outdated,
        seal_state_hidden=hidden,
    )


def _bound_under(session: Session, notice: Notice, seal: Seal | None) -> tuple[bool, datetime | None]:
    """Whether ``seal`` is still bound to the notice's case by the binding it had when the notice was issued, and
    when that binding began (``None`` for a binding older than the binding history)."""
    if seal is None or seal.case_no != notice.case_no:
        return False, None
    # issued_at is in whole seconds (rounded down): a binding begun a second later or more began after the notice
    later = select(SealBinding.id).where(
        SealBinding.device_id == notice.device_id, SealBinding.bound_at >= notice.issued_at + timedelta(seconds=1)
    )
    if session.scalar(later.limit(1)) is not None:
        return False, None  # the binding the notice was issued under ended since (the seal was bound anew)
    current = select(SealBinding.bound_at).where(
        SealBinding.device_id == seal.device_id, SealBinding.case_no == notice.case_no, SealBinding.unbound_at.is_(None)
    )
    return True, session.scalar(current.order_by(SealBinding.bound_at.desc()).limit(1))


def _outdated(session: Session, notice: Notice, *, seal: Seal, case: Case, now: datetime) -> Outdated | None:
    """How the notice differs from what the court would print now, or ``None`` if it is current."""
    term_ended_on = None
    if case.seizure_expires_on is not None and end_of_court_day(case.seizure_expires_on) <= now:
        term_ended_on = case.seizure_expires_on
    current = notice_facts(session, seal=seal)
    changed: tuple[str, ...] = ()
    if current.sha256().hex() != notice.facts_sha256:
        printed = NoticeFacts.from_json(notice.facts)
        changed = tuple(f.name for f in fields(NoticeFacts) if getattr(printed, f.name) != getattr(current, f.name))
    if term_ended_on is None and not changed:
        return None
    return Outdated(term_ended_on=term_ended_on, changed=changed)


def _outdated_detail(outdated: Outdated) -> str:
    parts = []
    if outdated.term_ended_on is not None:
        parts.append(f"the seizure's term ended on {outdated.term_ended_on.isoformat()}")
    if outdated.changed:
        parts.append(f"the court's record no longer says what it printed ({', '.join(outdated.changed)})")
    return "; ".join(parts)


def _matches(notice: Notice, claims: NoticeClaims) -> bool:
    return (
        notice.device_id == claims.device_id
        and notice.case_no == claims.case_no
        and notice.issued_at == claims.issued_at
        and notice.expires_at == claims.expires_at
        and notice.facts_sha256 == claims.facts_sha256.hex()
    )


def _standing(session: Session, device_id: str) -> list[Notice]:
    """The seal's notices neither superseded nor revoked (normally at most one), newest first."""
    query = select(Notice).where(
        Notice.device_id == device_id, Notice.superseded_at.is_(None), Notice.revoked_at.is_(None)
    )
    return list(session.scalars(query.order_by(Notice.id.desc())))


def _bound_at(session: Session, seal: Seal) -> datetime:
    """When the seal's current binding began (its installation); its registration for a binding older than the
    binding history."""
    query = select(SealBinding.bound_at).where(
        SealBinding.device_id == seal.device_id, SealBinding.unbound_at.is_(None), SealBinding.case_no == seal.case_no
    )
    bound_at = session.scalar(query.order_by(SealBinding.bound_at.desc()).limit(1))
    return bound_at if bound_at is not None else seal.registered_at
