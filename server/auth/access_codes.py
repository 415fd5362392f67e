"""The debtor's access code of a case: issued (and rotated) by a clerk, printed for the debtor, shown once.

Signing in with the case number and the code starts a session of the case's *code account*: a debtor user made
for the case on the first issue (``debtor-case-<case id>``), assigned to that case only, whose password no one
knows (it cannot log in with a password). Rotating the code replaces its hash and ends every session of that
account, so the old code and whatever it opened stop working at once; so does closing the case
(:func:`change_case_status`). A lifted case keeps its sessions (the debtor reads the outcome of the request there),
but its code signs in no more. The code is 16 characters of an alphabet
without look-alikes (about 80 bits), printed in groups of four; it is stored as an argon2id hash, like passwords,
and compared without regard to case, spaces or hyphens.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit.service import Actor, record_audit
from server.auth.access import Role
from server.auth.models import CaseAccessCode, User
from server.auth.passwords import hash_password, verify_password
from server.auth.sessions import revoke_user_sessions
from server.auth.users import NO_PASSWORD, assign_case, create_user, find_user
from server.core.court_clock import court_clock
from server.errors import Conflict
from server.seals.cases import find_case, get_case, set_case_status
from server.seals.models import Case, CaseStatus
from server.words import words

#: No 0/O, 1/I/L: a code is read off paper and typed.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 16
GROUP = 4


@dataclass(frozen=True)
class IssuedCode:
    case_no: str
    code: str = ""  # shown once, never stored
    username: str = ""
    issued_at: datetime | None = None
    rotated: bool = False


def normalise_code(text: str) -> str:
    """The code as stored and compared: upper case, without spaces or hyphens."""
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + GROUP] for i in range(0, CODE_LENGTH, GROUP))


def code_username(case_id: int) -> str:
    return f"debtor-case-{case_id}"


def issue_access_code(
    session: Session,
    *,
    actor: Actor | None,
    case_no: str,
    now: datetime,
    rotate: bool = False,
    replacing: datetime | None = None,
) -> IssuedCode:
    """Issue the case's access code, or rotate it (ending the old code's sessions); audited as ``case.access_code``.
    The code is in the answer only. :class:`Conflict` for a case that is lifted or closed (nor does its code sign
    in any more: :func:`server.auth.login.sign_in_with_code`).

    A code is replaced only when asked (``rotate``): a case that has one refuses a first issue (:class:`Conflict`) —
    a form sent twice, or two clerks at once, would otherwise each be shown a code of which only the last works.
    ``replacing`` (the ``issued_at`` of the code the caller saw) makes the rotation conditional: refused if the
    case's code is not that one any more (another was issued since). The case's row is locked first, so that
    issues of one case's code run one after the other and each sees the last."""
    case = get_case(session, case_no=case_no, for_update=True)
    if case.status in (CaseStatus.LIFTED, CaseStatus.CLOSED):
        raise Conflict(
            f"案件 {case.case_no} 目前为“{words('case_status', case.status)[0]}”，被执行人不再需要查询码。 / "
            f"case {case.case_no!r} is {case.status}: its debtor needs no access code any more"
        )
    row = session.scalar(
        select(CaseAccessCode).where(CaseAccessCode.case_no == case.case_no).execution_options(populate_existing=True)
    )
    _check_replacing(case.case_no, row, rotate=rotate or replacing is not None, replacing=replacing)
    code = new_code()
    code_hash = hash_password(normalise_code(code))
    if row is None:
        user = _code_account(session, case_id=case.id, case_no=case.case_no, debtor=case.debtor, actor=actor)
        row = CaseAccessCode(case_no=case.case_no, user_id=user.id, code_hash=code_hash)
        session.add(row)
        rotated = False
    else:
        account = session.get(User, row.user_id)
        assert account is not None
        user = account
        row.code_hash = code_hash
        revoke_user_sessions(session, user_id=user.id, now=now)
        rotated = True
    row.issued_at = now
    row.issued_by = actor.id if actor is not None else None
    session.flush()
    details = {"username": user.username, "rotated": rotated}
    record_audit(
        session, actor=actor, action="case.access_code", target=case.case_no, case_no=case.case_no, details=details
    )
    return IssuedCode(case.case_no, code, user.username, now, rotated)


def _check_replacing(case_no: str, row: CaseAccessCode | None, *, rotate: bool, replacing: datetime | None) -> None:
    """:class:`Conflict` unless the case's code (``row``) is the one the caller means to replace: none for a first
    issue, the one issued at ``replacing`` if given, any for a rotation."""
    if row is not None and not rotate:
        raise Conflict(
            f"案件 {case_no} 已于 {court_clock(row.issued_at)} 生成查询码（可能是同一表单提交了两次）；"
            "如需作废并重新生成，请刷新页面后选择“重新生成”。 / "
            f"case {case_no!r} has an access code already (issued {court_clock(row.issued_at)} court time; the same "
            "form sent twice?): to replace it, rotate it explicitly"
        )
    if replacing is not None and (row is None or row.issued_at != replacing):
        raise Conflict(
            f"案件 {case_no} 的查询码已被另一次操作重新生成，您要替换的查询码已失效；"
            "请刷新页面，确认后再重新生成。 / "
            f"case {case_no!r}'s access code was issued again meanwhile: the code you meant to replace is gone; "
            "look again before rotating"
        )


def _code_account(session: Session, *, case_id: int, case_no: str, debtor: str, actor: Actor | None) -> User:
    username = code_username(case_id)
    if find_user(session, username=username) is not None:
        raise Conflict(f"user {username!r} exists but holds no access code of case {case_no!r}")
    full_name = f"被执行人 {debtor}".strip()[:128]
    user = create_user(session, username=username, role=Role.DEBTOR, password_hash=NO_PASSWORD, full_name=full_name)
    assign_case(session, user=user, case_no=case_no, by=actor)
    return user


def find_code(session: Session, *, case_no: str) -> CaseAccessCode | None:
    """The case's live code (its hash and account), if it has one; the number in any spelling it is found under."""
    case = find_case(session, case_no=case_no)
    if case is None:
        return None
    return session.scalar(select(CaseAccessCode).where(CaseAccessCode.case_no == case.case_no))


def code_matches(row: CaseAccessCode | None, code: str) -> bool:
    """Is ``code`` the live code of ``row``? Costs an argon2 check even without a row, so timing tells nothing.
    Call it outside any transaction (the check takes a while)."""
    ok = verify_password(row.code_hash if row is not None else None, normalise_code(code))
    return ok and row is not None


def access_code_of(session: Session, *, case_no: str) -> IssuedCode | None:
    """When the case's code was issued, and its account (never the code): ``None`` if it has none."""
    row = session.scalar(select(CaseAccessCode).where(CaseAccessCode.case_no == case_no))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    return IssuedCode(case_no, username=user.username if user else "", issued_at=row.issued_at)


def change_case_status(
    session: Session, *, actor: Actor | None, case_no: str, status: CaseStatus, note: str, now: datetime
) -> Case:
    """:func:`~server.seals.cases.set_case_status` as a clerk asks it (the API and the page): closing the case also
    ends every session its access code opened (the debtor's portal of a closed case is shut at once, not when the
    session expires)."""
    case = set_case_status(session, actor=actor, case_no=case_no, status=status, note=note)
    if status is CaseStatus.CLOSED:
        row = session.scalar(select(CaseAccessCode).where(CaseAccessCode.case_no == case.case_no))
        if row is not None:
            revoke_user_sessions(session, user_id=row.user_id, now=now)
    return case
