"""Users and case assignments: keyword-only functions on a session. The caller commits.

The business actions (:func:`register_user`, :func:`assign_user`, :func:`unassign_user`) write their own audit
entry with their ``actor`` (a user, or ``None`` for the command line); the API and the CLI both call them.

Passwords arrive here already hashed (:func:`server.auth.passwords.hash_password`): storage code never sees one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit.service import Actor, record_audit
from server.auth.access import ASSIGNABLE_ROLES, Role
from server.auth.errors import Forbidden
from server.auth.models import CaseAccessCode, CaseAssignment, User
from server.auth.sessions import revoke_user_sessions
from server.core.base import utc_now
from server.core.unique import unique_or
from server.errors import AlreadyExists, Conflict, NotFound
from server.seals.case_numbers import canonical_case_no
from server.seals.cases import find_case, get_case
from server.words import words

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise ValueError(
            "用户名为 2–64 个字符（a-z 0-9 . _ -），以字母或数字开头。 / "
            "a username has 2-64 characters of a-z 0-9 . _ - and starts with a letter or digit"
        )
    return username


def get_user(session: Session, *, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"unknown user {username!r}")
    return user


def find_user(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


#: The password hash of a case's access-code account (:mod:`server.auth.access_codes`): no password verifies
#: against it, so the account signs in with its case's code only.
NO_PASSWORD = "!access-code-only"


def is_code_account(user: User) -> bool:
    """Whether ``user`` is a case's access-code account (it signs in with the code, and has no password to change)."""
    return user.password_hash == NO_PASSWORD


def create_user(
    session: Session, *, username: str, role: Role, password_hash: str, full_name: str = "", disabled: bool = False
) -> User:
    """Add a user; raise :class:`AlreadyExists` if the username is taken."""
    validate_username(username)

    def taken() -> AlreadyExists:
        return AlreadyExists(f"用户 {username} 已存在。 / user {username!r} already exists")

    if find_user(session, username=username) is not None:
        raise taken()
    user = User(username=username, role=Role(role).value, password_hash=password_hash, full_name=full_name)
    user.disabled = disabled
    with unique_or(session, taken):  # the same username created at once: the unique index lets one through
        session.add(user)
        session.flush()
    return user


def register_user(
    session: Session,
    *,
    actor: Actor | None,
    username: str,
    role: Role,
    password_hash: str,
    full_name: str = "",
    case_nos: Sequence[str] = (),
) -> User:
    """Create a user assigned to ``case_nos`` at once, and record it (``user.create``, and ``case.assign`` in each
    case's entries)."""
    user = create_user(session, username=username, role=role, password_hash=password_hash, full_name=full_name)
    details = {"role": user.role, "case_nos": list(case_nos)}
    record_audit(session, actor=actor, action="user.create", target=user.username, details=details)
    for case_no in case_nos:
        assign_user(session, actor=actor, user=user, case_no=case_no)
    return user


def change_user(
    session: Session,
    *,
    actor: User,
    user: User,
    role: Role | None = None,
    disabled: bool | None = None,
    full_name: str | None = None,
    password_hash: str | None = None,
) -> User:
    """A clerk changes a user's role, name or password, or disables (or enables) them; a new role, a new password
    and disabling end the user's logins. A clerk cannot disable or demote themself (:class:`Forbidden`). Recorded as
    ``user.update`` (a new password only as "reset")."""
    if user.id == actor.id and (disabled or (role is not None and role is not Role.CLERK)):
        raise Forbidden("书记员不能停用自己或更改自己的角色。 / a clerk cannot disable or demote themself")
    if is_code_account(user) and ((role is not None and role is not Role.DEBTOR) or password_hash is not None):
        # Whoever holds the paper code signs in as this account: another role or a password would be theirs too.
        raise Conflict(
            f"{user.username} 是案件查询码账号，不能改角色或设密码。 / {user.username!r} is a case's access-code "
            "account: it keeps the debtor's role and no password"
        )
    changes: dict[str, object] = {}
    if role is not None:
        user.role = changes["role"] = role.value
    if disabled is not None:
        user.disabled = changes["disabled"] = disabled
    if full_name is not None:
        user.full_name = changes["full_name"] = full_name
    if password_hash is not None:
        user.password_hash = password_hash
        changes["password"] = "reset"
    if role is not None or disabled or password_hash is not None:
        revoke_user_sessions(session, user_id=user.id, now=utc_now())
    session.flush()
    record_audit(session, actor=actor, action="user.update", target=user.username, details=changes)
    return user


def assign_user(session: Session, *, actor: Actor | None, user: User, case_no: str) -> CaseAssignment:
    """Assign ``user`` to a case (:func:`assign_case`), and record it (``case.assign``)."""
    assignment = assign_case(session, user=user, case_no=case_no, by=actor)
    details = {"username": user.username}
    case_no = assignment.case_no
    record_audit(session, actor=actor, action="case.assign", target=case_no, case_no=case_no, details=details)
    return assignment


def unassign_user(session: Session, *, actor: Actor | None, user: User, case_no: str) -> str:
    """Take ``user`` off a case (:func:`unassign_case`), and record it (``case.unassign``); the case's number."""
    case_no = unassign_case(session, user=user, case_no=case_no)
    details = {"username": user.username}
    record_audit(session, actor=actor, action="case.unassign", target=case_no, case_no=case_no, details=details)
    return case_no


def _not_its_code_case(session: Session, user: User, case_no: str) -> bool:
    """Whether ``case_no`` is not the case of the access code that signs ``user`` in (before the code's row is
    written, when the account is made: whether it has a case already)."""
    code_case = session.scalar(select(CaseAccessCode.case_no).where(CaseAccessCode.user_id == user.id))
    if code_case is not None:
        return code_case != case_no
    return session.scalar(select(CaseAssignment.id).where(CaseAssignment.user_id == user.id).limit(1)) is not None


def assign_case(session: Session, *, user: User, case_no: str, by: Actor | None = None) -> CaseAssignment:
    """Assign a judge or officer to a case, or make a creditor or debtor a party to it. A case's access-code
    account is assigned to its own case when it is made, and to no other: its paper code would open that one too."""
    case_no = get_case(session, case_no=case_no).case_no
    if Role(user.role) not in ASSIGNABLE_ROLES:
        raise Conflict(
            f"{words('role', user.role)[0]}可查看所有案件，无需分配案件。 / "
            f"{Role(user.role).with_article} sees every case and is not assigned to cases"
        )
    if is_code_account(user) and _not_its_code_case(session, user, case_no):
        raise Conflict(
            f"{user.username} 是案件查询码账号，只属于该案件。 / {user.username!r} is a case's access-code account: "
            "it belongs to that case only"
        )

    def assigned() -> AlreadyExists:
        return AlreadyExists(
            f"用户 {user.username} 已分配到案件 {case_no}。 / "
            f"user {user.username!r} is already assigned to case {case_no!r}"
        )

    existing = session.scalar(
        select(CaseAssignment).where(CaseAssignment.user_id == user.id, CaseAssignment.case_no == case_no)
    )
    if existing is not None:
        raise assigned()
    assignment = CaseAssignment(case_no=case_no, user_id=user.id, assigned_by=by.id if by is not None else None)
    with unique_or(session, assigned):  # the same assignment made at once: one goes through
        session.add(assignment)
        session.flush()
    return assignment


def unassign_case(session: Session, *, user: User, case_no: str) -> str:
    """Take ``user`` off the case ``case_no`` names (however it is spelt); the case number as stored."""
    case = find_case(session, case_no=case_no)
    case_no = case.case_no if case is not None else canonical_case_no(case_no)
    assignment = session.scalar(
        select(CaseAssignment).where(CaseAssignment.user_id == user.id, CaseAssignment.case_no == case_no)
    )
    if assignment is None:
        raise NotFound(
            f"用户 {user.username} 未分配到案件 {case_no}。 / "
            f"user {user.username!r} is not assigned to case {case_no!r}"
        )
    session.delete(assignment)
    session.flush()
    return case_no


def assigned_case_nos(session: Session, *, user: User) -> list[str]:
    query = select(CaseAssignment.case_no).where(CaseAssignment.user_id == user.id).order_by(CaseAssignment.case_no)
    return list(session.scalars(query))


def case_members(session: Session, *, case_no: str) -> list[User]:
    """Everyone assigned to the case, by role then username."""
    query = (
        select(User)
        .join(CaseAssignment, CaseAssignment.user_id == User.id)
        .where(CaseAssignment.case_no == case_no)
        .order_by(User.role, User.username)
    )
    return list(session.scalars(query))


def usernames_by_id(session: Session, ids: set[int | None]) -> dict[int | None, str]:
    """The usernames of the users with these ids (``None`` ids — actions of the system or the CLI — skipped)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {row.id: row.username for row in session.execute(select(User.id, User.username).where(User.id.in_(wanted)))}
