"""The access policy, in one place: which cases a user sees, and what each role may do.

- A clerk (书记员, the administrator) sees every case. Judges and officers see the cases they are assigned to; a
  creditor or debtor sees the case(s) they are a party to. Assignments are rows of ``case_assignments``.
- Visibility comes first: a case (or a seal bound to it, its events, snapshots, alarms) that the user cannot see is
  *not found* (404), exactly like one that does not exist, so nobody learns which case numbers exist.
- Then the role: a user who sees the case but whose role lacks the permission gets :class:`Forbidden` (403).
- Seals that are bound to no case (the court's stock) are visible to the roles that may bind them.
- A removal request's acts belong to people of its case: the debtor files and withdraws it, the creditor adds views,
  the judge decides, the officer confirms the removal on site. The clerk reads them all, takes requests up, re-sends
  a disarm and issues the debtor's access code, but does none of those acts in their stead.

- An object reached by its own id (alarm, command, notice, audit entry, removal request, picture) is *not found*
  too when the role may not read such objects at all: its ids are court-wide and sequential, and a 403 would say
  that the next one was just created in the caller's case (:func:`check_object_visible`). A role that may read it
  but not act on it gets 403.

Routes never check roles themselves: they ask :func:`require`, :func:`case_for`, :func:`seal_for`,
:func:`check_object_visible` or :func:`visible_case_nos`.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.auth.errors import Forbidden
from server.auth.models import CaseAssignment, User
from server.errors import NotFound
from server.evidence.models import Snapshot
from server.seals.cases import find_case
from server.seals.models import Case, Seal, SealBinding


class Role(StrEnum):
    CLERK = "clerk"
    JUDGE = "judge"
    OFFICER = "officer"
    CREDITOR = "creditor"
    DEBTOR = "debtor"

    @property
    def with_article(self) -> str:
        """ "a clerk", "an officer": the role in a sentence."""
        return f"{'an' if self.value[0] in 'aeiou' else 'a'} {self.value}"


class Permission(StrEnum):
    CASE_READ = "case:read"
    CASE_WRITE = "case:write"
    CASE_ASSIGN = "case:assign"
    SEAL_READ = "seal:read"  # a seal of the case: where, since when, whether it says it is armed
    SEAL_STATUS = "seal:status"  # its connection (online, last heard from) and the commands sent to it
    SEAL_REGISTER = "seal:register"
    SEAL_BIND = "seal:bind"
    EVENT_READ = "event:read"
    SNAPSHOT_READ = "snapshot:read"
    ALARM_READ = "alarm:read"
    ALARM_ACK = "alarm:ack"
    ALARM_CLOSE = "alarm:close"
    USER_ADMIN = "user:admin"
    AUDIT_READ = "audit:read"
    COMMAND_SEND = "command:send"  # test_warning, snapshot, ping
    COMMAND_DISARM = "command:disarm"  # disarm and arm: carries out a removal decision
    NOTIFY_ADMIN = "notify:admin"  # the webhooks a case's alarms go to
    QUARANTINE_READ = "quarantine:read"  # the messages the ingest refused (of any seal, of no case)
    ACCESS_CODE_ISSUE = "case:access-code"  # issue or rotate the debtor's access code of a case
    REMOVAL_READ = "removal:read"  # a case's removal requests, their proofs, views, seals and history
    REMOVAL_FILE = "removal:file"  # file a removal request, and withdraw it before the decision (the debtor)
    REMOVAL_COMMENT = "removal:comment"  # a written view on a request (the creditor)
    REMOVAL_REVIEW = "removal:review"  # take a request up for review
    REMOVAL_DECIDE = "removal:decide"  # approve (the seals are disarmed) or reject, with reasons (the judge)
    REMOVAL_RESEND = "removal:resend"  # a new disarm to a seal that did not acknowledge in time
    REMOVAL_LIFT = "removal:lift"  # confirm on site that the seals are removed (the officer)
    NOTICE_PRINT = "notice:print"  # the seal's printed notice (查封公告), issued with a signed QR code
    NOTICE_REVOKE = "notice:revoke"  # revoke a notice: its page then says it no longer stands
    AUDIT_PROOF = "audit:proof"  # the Merkle inclusion proof of a case's audit entry (its judge; the clerk)
    EVIDENCE_EXPORT = "evidence:export"  # download the case's evidence bundle (docs/evidence.md)


_P = Permission
#: What a removal request's parties, its judge and its officer do themselves: not the clerk's to do for them — nor
#: disarming (or arming) a seal by a command of its own, which is deciding whether the seal guards the property.
_REMOVAL_ACTS = frozenset({_P.REMOVAL_FILE, _P.REMOVAL_COMMENT, _P.REMOVAL_DECIDE, _P.REMOVAL_LIFT, _P.COMMAND_DISARM})
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # The clerk administers: everything but the acts of the removal workflow (reads them, takes requests up,
    # issues the debtor's access code, re-sends a disarm the judge's approval issued).
    Role.CLERK: frozenset(Permission) - _REMOVAL_ACTS,
    Role.JUDGE: frozenset(
        {_P.CASE_READ, _P.SEAL_READ, _P.SEAL_STATUS, _P.EVENT_READ, _P.SNAPSHOT_READ}
        | {_P.ALARM_READ, _P.ALARM_ACK, _P.ALARM_CLOSE, _P.COMMAND_SEND, _P.COMMAND_DISARM, _P.NOTICE_PRINT}
        | {_P.REMOVAL_READ, _P.REMOVAL_REVIEW, _P.REMOVAL_DECIDE, _P.REMOVAL_RESEND}
        | {_P.AUDIT_PROOF, _P.EVIDENCE_EXPORT}
    ),
    Role.OFFICER: frozenset(
        {_P.CASE_READ, _P.SEAL_READ, _P.SEAL_STATUS, _P.SEAL_BIND, _P.EVENT_READ, _P.SNAPSHOT_READ}
        | {_P.ALARM_READ, _P.ALARM_ACK, _P.COMMAND_SEND, _P.NOTICE_PRINT, _P.REMOVAL_READ, _P.REMOVAL_LIFT}
    ),
    # The applicant follows the case read-only and is told of alarms; pictures (of people) stay with the court. A
    # removal request is read and answered with written views.
    Role.CREDITOR: frozenset({_P.CASE_READ, _P.SEAL_READ, _P.SEAL_STATUS, _P.EVENT_READ, _P.ALARM_READ})
    | {_P.REMOVAL_READ, _P.REMOVAL_COMMENT},
    # The debtor sees the case and whether its seals are in place (armed, where, since when) — not whether they
    # are online or when they last spoke, nor the commands sent to them: whoever holds the paper access code
    # would learn when the seal on the door is deaf, or whether jamming it worked. Files a removal request and
    # follows it — without learning which of its seals answered (server.removal.shown, server.removal.messages).
    Role.DEBTOR: frozenset({_P.CASE_READ, _P.SEAL_READ, _P.REMOVAL_READ, _P.REMOVAL_FILE}),
}

#: Roles that are assigned to cases; a clerk sees every case and is never assigned.
ASSIGNABLE_ROLES = frozenset({Role.JUDGE, Role.OFFICER, Role.CREDITOR, Role.DEBTOR})
#: The court's own people; the others are the parties. The court reads a proof picture as it was uploaded, the
#: parties without its metadata (server.removal.proof_metadata).
COURT_STAFF = frozenset({Role.CLERK, Role.JUDGE, Role.OFFICER})


def is_court_staff(user: User) -> bool:
    return Role(user.role) in COURT_STAFF


def has_permission(user: User, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[Role(user.role)]


def require(user: User, permission: Permission) -> None:
    """Raise :class:`Forbidden` unless the user's role has ``permission`` (for actions not tied to one case)."""
    if not has_permission(user, permission):
        raise Forbidden(
            f"您的角色不能执行此操作（{permission.value}）。 / "
            f"{Role(user.role).with_article} may not do this ({permission.value})"
        )


def sees_all_cases(user: User) -> bool:
    return Role(user.role) is Role.CLERK


def visible_case_nos(session: Session, user: User) -> set[str] | None:
    """The case numbers ``user`` may see, or ``None`` for all of them."""
    if sees_all_cases(user):
        return None
    return set(session.scalars(select(CaseAssignment.case_no).where(CaseAssignment.user_id == user.id)))


def case_filter(session: Session, user: User, column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
    """A WHERE clause keeping rows whose ``column`` (a case number) the user may see."""
    visible = visible_case_nos(session, user)
    return true() if visible is None else column.in_(visible)


def can_see_case(session: Session, user: User, case_no: str) -> bool:
    if sees_all_cases(user):
        return True
    query = select(CaseAssignment.id).where(CaseAssignment.user_id == user.id, CaseAssignment.case_no == case_no)
    return session.scalar(query) is not None


def case_for(session: Session, user: User, case_no: str, permission: Permission) -> Case:
    """The case, if the user sees it (else :class:`NotFound`) and may do ``permission`` on it (else Forbidden)."""
    case = find_case(session, case_no=case_no)
    if case is None or not can_see_case(session, user, case.case_no):
        raise NotFound(f"unknown case {case_no!r}")
    require(user, permission)
    return case


def sees_stock(user: User) -> bool:
    """Whether ``user`` sees the court's stock, the seals bound to no case (who may bind one, or sees every case)."""
    return sees_all_cases(user) or has_permission(user, Permission.SEAL_BIND)


def can_see_seal(session: Session, user: User, seal: Seal) -> bool:
    if seal.case_no is None:
        return sees_stock(user)
    return can_see_case(session, user, seal.case_no)


def seal_for(session: Session, user: User, device_id: str, permission: Permission) -> Seal:
    """The seal, if the user sees it (else :class:`NotFound`) and may do ``permission`` (else Forbidden)."""
    seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
    if seal is None or not can_see_seal(session, user, seal):
        raise NotFound(f"unknown seal {device_id!r}")
    require(user, permission)
    return seal


def seal_in_history_for(session: Session, user: User, device_id: str, permission: Permission) -> Seal:
    """The seal, if the user sees it now or sees a case it was ever bound to (else :class:`NotFound`), and may do
    ``permission`` (else Forbidden): a case's events stay verifiable after its seal was unbound or moved on, so
    its key and bindings stay readable to whoever may read that case."""
    seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
    if seal is None:
        raise NotFound(f"unknown seal {device_id!r}")
    if not can_see_seal(session, user, seal):
        visible = visible_case_nos(session, user)
        bound_to = select(SealBinding.id).where(SealBinding.device_id == device_id)
        if visible is not None and session.scalar(bound_to.where(SealBinding.case_no.in_(visible)).limit(1)) is None:
            raise NotFound(f"unknown seal {device_id!r}")
    require(user, permission)
    return seal


def seal_filter(session: Session, user: User) -> ColumnElement[bool]:
    """A WHERE clause keeping the seals the user may see (see :func:`can_see_seal`)."""
    visible = visible_case_nos(session, user)
    if visible is None:
        return true()
    bound_to_visible = Seal.case_no.in_(visible)
    if sees_stock(user):
        return bound_to_visible | Seal.case_no.is_(None)
    return bound_to_visible


def snapshot_for(session: Session, user: User, sha256: str) -> Snapshot:
    """The snapshot, if one of its cases is visible and the role may view pictures (else :class:`NotFound`: whoever
    reads a case's events sees the hashes of its pictures, and must not learn from a 403 which ones arrived).

    The same picture may belong to several cases (one row each): any one the user sees will do."""
    query = select(Snapshot).where(Snapshot.sha256 == sha256, case_filter(session, user, Snapshot.case_no))
    snapshot = session.scalars(query.order_by(Snapshot.id).limit(1)).first()
    if snapshot is None or not has_permission(user, Permission.SNAPSHOT_READ):  # as check_object_visible says why
        raise NotFound(f"unknown snapshot {sha256}")
    return snapshot


def check_object_visible(
    session: Session, user: User, case_no: str, read: Permission, *, what: str, act: Permission | None = None
) -> None:
    """For an object reached by its own id (an alarm, a command, a notice, a removal request…) that belongs to
    ``case_no``: :class:`NotFound` naming ``what`` — word for word what an id naming nothing gets — unless the user
    sees the case *and* their role may ``read`` such objects; then :class:`Forbidden` unless it may also ``act``.

    Ids are court-wide and sequential: a 403 for an object of their own case that the role may not read would tell
    the caller it exists (a debtor polling the next alarm id would learn the moment a seal of theirs went offline,
    i.e. that jamming it worked). A caller who may read the object learns nothing from a 403 for acting on it."""
    if not can_see_case(session, user, case_no) or not has_permission(user, read):
        raise NotFound(f"unknown {what}")
    if act is not None:
        require(user, act)
