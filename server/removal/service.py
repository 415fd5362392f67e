"""The removal request's business actions before the decision takes effect: file it, take it up, the creditor's
views, the debtor's withdrawal, the judge's rejection. One function each, called by the API and the CLI alike;
each moves the request through :func:`~server.removal.steps.advance` (its audit entry) and tells the people of
the case (:mod:`~server.removal.messages`). The caller commits — but for :func:`file_with_proofs`, which must
commit before the proof files are checked, and removes the files of a filing that is not committed. Approval, the
disarm and the lifting are in :mod:`server.removal.disarm`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.audit.service import Actor
from server.config import RemovalSettings
from server.errors import Conflict, Invalid, Said
from server.removal.errors import ProofRefused
from server.removal.grounds import RemovalGround
from server.removal.messages import ground_text, tell
from server.removal.models import RemovalProof, RemovalRequest, RemovalView
from server.removal.proof_files import discard_unfiled, store_proofs
from server.removal.proofs import CheckedProof, ProofStore
from server.removal.state import OPEN_STATES, RemovalAction, RemovalState, transition
from server.removal.steps import FILE, advance, hold_of, record_step
from server.seals.cases import get_case, hold_case
from server.seals.models import Case, CaseStatus, Seal

logger = logging.getLogger(__name__)

#: The period ``[removal] max_filings_per_day`` counts over.
FILING_PERIOD = timedelta(hours=24)

#: A proof file as an edge receives it (the API's and the portal's upload).
Upload = TypeVar("Upload")


def open_request(session: Session, *, case_no: str) -> RemovalRequest | None:
    """The case's open request (not rejected, cancelled or lifted), if any."""
    query = select(RemovalRequest).where(
        RemovalRequest.case_no == case_no, RemovalRequest.state.in_([s.value for s in OPEN_STATES])
    )
    return session.scalars(query).first()


def check_filing(
    session: Session, *, case_no: str, statement: str, files: int, settings: RemovalSettings, now: datetime
) -> Case:
    """The checks a filing must pass that need no proof file read: cheap, so that a filing bound to fail fails
    before its pictures are decoded. :class:`Invalid` for an empty statement, :class:`ProofRefused` for more files
    than allowed, :class:`Conflict` if the case has an open request already, has had ``max_filings_per_day`` in the
    last 24 hours (:func:`check_filings_today`), is not sealed or has no seal."""
    case = get_case(session, case_no=case_no)
    if not statement.strip():
        raise Invalid("a removal request needs a statement").saying("refusal.statement_missing")
    if files > settings.proof_max_files:
        raise ProofRefused(f"{files} proof files: a request takes at most {settings.proof_max_files}").saying(
            "refusal.too_many_files", n=files, max=settings.proof_max_files
        )
    existing = open_request(session, case_no=case.case_no)
    if existing is not None:
        raise Conflict(
            f"case {case.case_no!r} has an open removal request: no. {existing.id} ({existing.state})"
        ).saying("refusal.open_request", no=existing.id, state=Said(f"case_removal_state.{existing.state}"))
    check_filings_today(session, case_no=case.case_no, settings=settings, now=now)
    if case.status != CaseStatus.SEALED:
        raise Conflict(f"case {case.case_no!r} is {case.status}: a removal request is filed while it is sealed").saying(
            "refusal.case_not_sealed", status=Said(f"case_status.{case.status}")
        )
    if session.scalar(select(Seal.id).where(Seal.case_no == case.case_no).limit(1)) is None:
        raise Conflict(f"no seal is bound to case {case.case_no!r}: there is nothing to lift").saying("refusal.no_seal")
    return case


def check_filings_today(session: Session, *, case_no: str, settings: RemovalSettings, now: datetime) -> None:
    """:class:`Conflict` if ``max_filings_per_day`` requests were filed for the case in the 24 hours before ``now``
    (whatever became of them), saying when the next may be filed: each filing's proof files stay in the store."""
    since = now - FILING_PERIOD
    query = (
        select(RemovalRequest.filed_at)
        .where(RemovalRequest.case_no == case_no, RemovalRequest.filed_at > since)
        .order_by(RemovalRequest.filed_at.desc())
        .limit(settings.max_filings_per_day)
    )
    recent = session.scalars(query).all()
    if len(recent) >= settings.max_filings_per_day:
        after = recent[-1] + FILING_PERIOD
        raise Conflict(
            f"case {case_no!r} has had {len(recent)} removal requests in 24 hours, the most allowed: "
            f"the next may be filed after {after:%Y-%m-%d %H:%M}Z"
        ).saying("refusal.too_many_filings", n=len(recent), after=after)


def file_request(
    session: Session,
    *,
    actor: Actor,
    case_no: str,
    ground: RemovalGround,
    statement: str,
    proofs: Sequence[CheckedProof],
    store: ProofStore,
    settings: RemovalSettings,
    now: datetime,
    written: list[CheckedProof] | None = None,
) -> RemovalRequest:
    """File a request for ``case_no`` with its (checked) proof files; :class:`Conflict` if the case already has an
    open one, is not sealed or has no seal to lift; :class:`ProofRefused` for more files than allowed. The files are
    stored last, once every check has passed, within the transaction
    (:func:`~server.removal.proof_files.store_proofs`); those it wrote are appended to ``written``, for the caller
    to remove if the transaction is not committed (:func:`file_with_proofs` does; a caller that files no proof
    file need not pass it). While the request is open it
    holds the case (:func:`~server.removal.steps.hold_of`)."""
    get_case(session, case_no=case_no, for_update=True)  # the case's seals cannot change while it is checked
    case = check_filing(session, case_no=case_no, statement=statement, files=len(proofs), settings=settings, now=now)
    request = RemovalRequest(
        case_no=case.case_no,
        open_case_no=case.case_no,
        state=RemovalState.SUBMITTED.value,
        ground=ground.value,
        statement=statement,
        filed_by=actor.id,
        filed_at=now,
        views_due_at=now + timedelta(seconds=settings.creditor_view_window_s),
        updated_at=now,
    )
    try:
        with session.begin_nested():  # two filings at once: the unique open_case_no lets one through
            session.add(request)
            session.flush()
    except IntegrityError:
        raise Conflict(f"case {case.case_no!r} has an open removal request").saying("refusal.filed_meanwhile") from None
    hold_case(session, case_no=case.case_no, holder=hold_of(request))
    kept: dict[str, CheckedProof] = {}
    for proof in proofs:
        kept.setdefault(proof.sha256, proof)  # the same file twice is one proof
    for proof in kept.values():
        session.add(
            RemovalProof(
                request_id=request.id,
                sha256=proof.sha256,
                size=proof.size,
                media_type=proof.media_type,
                filename=proof.filename,
                uploaded_at=now,
            )
        )
    details = {"ground": ground.value, "proofs": [p.sha256 for p in kept.values()]}
    record_step(session, request, FILE, before=None, actor=actor, now=now, note=statement[:500], details=details)
    tell(session, request, "filed", now=now, extra=ground_text(ground))
    session.flush()  # what the database may refuse is refused before a file is written
    store_proofs(session, store, kept.values(), case_no=case.case_no, written=[] if written is None else written)
    return request


def file_with_proofs(
    session: Session,
    *,
    actor: Actor,
    case_no: str,
    ground: RemovalGround,
    statement: str,
    uploads: Sequence[Upload],
    check: Callable[[Upload], CheckedProof],
    store: ProofStore,
    settings: RemovalSettings,
    clock: Callable[[], datetime],
) -> RemovalRequest:
    """File a request with the proof files an edge received (the API's, the portal's), and commit it. What fails
    without reading a file fails first (:func:`check_filing`: a stale form, a request filed meanwhile, a case
    lifted), and is committed; then, with no transaction held (on SQLite: no write lock), ``check`` makes each upload
    a proof — pictures decoded, in the edge's words when refused — and :func:`file_request` checks again in its own
    transaction, then stores them. Raises what those raise, nothing filed and no file of this filing left that no
    request refers to (:func:`~server.removal.proof_files.discard_unfiled`); the caller publishes the change."""
    check_filing(session, case_no=case_no, statement=statement, files=len(uploads), settings=settings, now=clock())
    session.commit()
    store.refused.check(case_no, clock())  # refused files count (server.removal.refusals): checking is work
    try:
        proofs = [check(upload) for upload in uploads]
    except ProofRefused as exc:
        store.refused.charge(case_no, clock(), exc)  # only refusals of the checks that cost work count
        raise
    written: list[CheckedProof] = []
    try:
        request = file_request(
            session,
            actor=actor,
            case_no=case_no,
            ground=ground,
            statement=statement,
            proofs=proofs,
            store=store,
            settings=settings,
            now=clock(),
            written=written,
        )
        session.commit()
    except BaseException:  # any refusal or failure, the commit's included: re-raised once the files are removed
        session.rollback()
        discard_unfiled(session, store, written, case_no=case_no)
        raise
    return request


def review_request(session: Session, *, actor: Actor, request: RemovalRequest, note: str, now: datetime) -> None:
    """The judge (or a clerk) takes the request up: ``submitted`` → ``under_review``."""
    advance(session, request, RemovalAction.REVIEW, actor=actor, now=now, note=note)
    tell(session, request, "under_review", now=now)


def add_view(session: Session, *, actor: Actor, request: RemovalRequest, text: str, now: datetime) -> RemovalView:
    """The creditor's written view, before the decision and within the time set for views."""
    transition(request.state, RemovalAction.COMMENT)  # before the decision only (409 otherwise)
    if not text.strip():
        raise Invalid("a view needs its text").saying("refusal.view_missing")
    if now >= request.views_due_at:
        raise Conflict(
            f"the time for views on removal request {request.id} ended at {request.views_due_at:%Y-%m-%d %H:%M}Z"
        ).saying("refusal.views_over", no=request.id, until=request.views_due_at)
    view = RemovalView(request_id=request.id, author_id=actor.id, at=now, text=text)
    session.add(view)
    session.flush()
    advance(
        session, request, RemovalAction.COMMENT, actor=actor, now=now, note=text[:500], details={"view_id": view.id}
    )
    tell(session, request, "view", now=now)
    return view


def cancel_request(session: Session, *, actor: Actor, request: RemovalRequest, note: str, now: datetime) -> None:
    """The debtor withdraws the request, before the decision."""
    advance(session, request, RemovalAction.CANCEL, actor=actor, now=now, note=note)
    tell(session, request, "cancelled", now=now)


def reject_request(session: Session, *, actor: Actor, request: RemovalRequest, reasons: str, now: datetime) -> None:
    """The judge rejects the request, with reasons; the seals stay as they are."""
    if not reasons.strip():
        raise Invalid("a rejection needs reasons").saying("refusal.reasons_missing")
    advance(session, request, RemovalAction.REJECT, actor=actor, now=now, note=reasons)
    request.decided_by, request.decided_at, request.decision_reasons = actor.id, now, reasons
    tell(session, request, "rejected", now=now, extra=reasons)
