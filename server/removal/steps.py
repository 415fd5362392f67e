"""The one place a removal request changes state: :func:`advance` applies :func:`~server.removal.state.transition`,
keeps the request's "open" mark (and releases its hold on the case once it is final: :func:`hold_of`), and writes
the step (the request's own history) and the audit entry — who, when, from which state to which, and the note — in
the caller's transaction. A note the server writes is given as ``said`` (the catalogue's key and values): stored so,
each page says it in its reader's language, and written out ``中文 / English`` as the step's ``note`` (the API's, the
audit log's and the evidence report's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit.service import Actor, actor_name, record_audit
from server.errors import NotFound, Said
from server.removal.models import RemovalRequest, RemovalStep
from server.removal.state import RemovalAction, RemovalState, transition
from server.seals.cases import hold_case
from server.words import said_json, said_words

FILE = "file"  # the filing: the step that has no state before it


def hold_of(request: RemovalRequest) -> str:
    """What holds the case while ``request`` is open (:attr:`server.seals.models.Case.held_by`): its seals are
    unbound, and the case closed, only through the request."""
    return f"removal-request:{request.id}"


def get_request(session: Session, *, request_id: int, for_update: bool = False) -> RemovalRequest:
    """The request, or :class:`NotFound`; ``for_update`` locks its row (PostgreSQL) until the transaction ends."""
    request = session.get(RemovalRequest, request_id, with_for_update=for_update or None)
    if request is None:
        raise NotFound(f"unknown removal request {request_id}")
    return request


def list_requests(
    session: Session, *, case_no: str, limit: int = 50, before: int | None = None
) -> list[RemovalRequest]:
    """The case's requests, newest first."""
    query = select(RemovalRequest).where(RemovalRequest.case_no == case_no)
    if before is not None:
        query = query.where(RemovalRequest.id < before)
    return list(session.scalars(query.order_by(RemovalRequest.id.desc()).limit(limit)))


def advance(
    session: Session,
    request: RemovalRequest,
    action: RemovalAction,
    *,
    actor: Actor | None,
    now: datetime,
    note: str = "",
    details: dict[str, Any] | None = None,
    seals: list[dict[str, Any]] | None = None,
    said: Said | None = None,
) -> RemovalState:
    """Move ``request`` by ``action`` (or raise :class:`~server.removal.errors.IllegalTransition`) and record it;
    ``seals``: the record of its seals a final step stores (:mod:`server.removal.record`), also in the audit entry."""
    before = RemovalState(request.state)
    after = transition(before, action)
    request.state = after.value
    request.updated_at = now
    request.open_case_no = None if after.is_final else request.case_no
    if after.is_final:  # the case's seals may be unbound, and the case closed, again by anyone allowed to
        hold_case(session, case_no=request.case_no, holder=None)
    if seals is not None:
        details = {**(details or {}), "seals": seals}
    step = record_step(
        session, request, action.value, before=before, actor=actor, now=now, note=note, details=details, said=said
    )
    step.seals = seals  # stored as SQL NULL when there is none
    return after


def record_step(
    session: Session,
    request: RemovalRequest,
    action: str,
    *,
    before: RemovalState | None,
    actor: Actor | None,
    now: datetime,
    note: str = "",
    details: dict[str, Any] | None = None,
    said: Said | None = None,
) -> RemovalStep:
    if said is not None:  # the server's note: ``note`` is what it says, in both languages
        note = " / ".join(said_words(said))
    step = RemovalStep(
        request_id=request.id,
        at=now,
        actor_id=actor.id if actor is not None else None,
        actor=actor_name(actor),
        action=action,
        from_state=before.value if before is not None else None,
        to_state=request.state,
        note=note,
        note_said=said_json(said) if said is not None else None,
    )
    session.add(step)
    audited = {
        "request_id": request.id,
        "from": step.from_state,
        "to": step.to_state,
        "note": note,
        **(details or {}),
    }
    record_audit(
        session,
        actor=actor,
        action=f"removal.{action}",
        target=request.case_no,
        case_no=request.case_no,
        details=audited,
    )
    return step
