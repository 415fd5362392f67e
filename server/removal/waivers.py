"""The judge's decision to lift a seal without its acknowledgement (a waiver), and what it covers: only a seal that
does not answer. A signed answer or event of the seal received after the decision takes precedence over it — its
ack (the seal is ``disarmed``), its refusal of the disarm, a signed event in the request's case saying it is armed
— and so does a disarm sent to it after the decision (a re-send goes only to a seal heard from again): the seal is
then shown, and counts, as it stands, and holds the request up until it acknowledges or the judge decides again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.evidence.queries import armed_in_case
from server.removal.models import RemovalRequest, RemovalWaiver

#: Its bindings to the request's case, (bound_at, unbound_at); ``None``: bound before the binding history existed.
Windows = Sequence[tuple[datetime, datetime | None]] | None


def waived(session: Session, request: RemovalRequest) -> dict[str, RemovalWaiver]:
    """The seals of the request the judge decided to lift without their acknowledgement, by device id."""
    query = select(RemovalWaiver).where(RemovalWaiver.request_id == request.id)
    return {waiver.device_id: waiver for waiver in session.scalars(query)}


def heard_since(
    session: Session,
    waiver: RemovalWaiver,
    *,
    case_no: str,
    issued_at: datetime,
    answered_at: datetime | None,
    windows: Windows,
    until: datetime | None,
) -> bool:
    """Whether the seal of ``waiver`` was heard from since the judge's decision, which then no longer covers it:
    its latest disarm (``issued_at``, ``answered_at``) was sent or answered after it, or its latest signed event
    in ``case_no`` that tells, received after it (within ``windows``, by ``until``), says it is armed."""
    at = waiver.decided_at
    if issued_at > at or (answered_at is not None and answered_at > at):
        return True
    spans = [(at, None)] if windows is None else [(max(s, at), e) for s, e in windows if e is None or e > at]
    said = armed_in_case(session, device_id=waiver.device_id, case_no=case_no, spans=spans, until=until)
    return said is not None and said[0]
