"""Courts and enforcement cases: registering them, changing them, and a case's status. Keyword-only functions on a
session; each business action writes its own audit entry with its ``actor`` (a user, or ``None`` for the command
line). The caller owns the transaction.

A case's court is not free text: it is the court whose code the case number carries (苏0214 in
``(2021)苏0214执1234号``), registered once with its name and telephone number.

A case's status moves along one table (:data:`CASE_TRANSITIONS`): ``open`` while no seal is bound, ``sealed`` while
one is (the seizure stands), ``lifting`` once a removal was approved and the seals are being disarmed (back to
``sealed`` if that removal does not go through), ``lifted`` when the seals are off the premises, and ``closed`` when
the clerk closes the case (with no seal left bound).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit.service import Actor, record_audit
from server.core.base import utc_now
from server.core.unique import unique_or
from server.errors import AlreadyExists, Conflict, Invalid, NotFound
from server.seals.case_numbers import case_no_spellings, parse_case_no
from server.seals.models import Case, CaseStatus, Court, Seal
from server.words import words

#: Case fields a clerk may change after creation.
CASE_FIELDS = (
    "judge",
    "judge_phone",
    "address",
    "sealed_property",
    "ruling_no",
    "applicant",
    "debtor",
    "seizure_expires_on",
)
#: Court fields that may be changed after registration (its code never changes).
COURT_FIELDS = ("name", "phone", "address")
#: The refusal of a court without a name.
COURT_NAME_MISSING = "请填写法院名称，例如 无锡市滨湖区人民法院。 / a court needs its name, e.g. 无锡市滨湖区人民法院"

_S = CaseStatus
#: The status a case may move to from each status.
CASE_TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    _S.OPEN: frozenset({_S.SEALED, _S.CLOSED}),
    _S.SEALED: frozenset({_S.LIFTING, _S.OPEN, _S.CLOSED}),  # open: its last seal unbound outside a removal
    _S.LIFTING: frozenset({_S.SEALED, _S.LIFTED, _S.CLOSED}),
    _S.LIFTED: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def get_court(session: Session, *, code: str) -> Court:
    court = session.get(Court, code)
    if court is None:
        raise NotFound(f"unknown court {code!r}")
    return court


def list_courts(session: Session) -> list[Court]:
    return list(session.scalars(select(Court).order_by(Court.code)))


def add_court(
    session: Session, *, actor: Actor | None, code: str, name: str, phone: str = "", address: str = ""
) -> Court:
    """Register a court by its code (法院代字, e.g. 苏0214) and name; raise :class:`AlreadyExists` if known."""
    code, name = code.strip(), name.strip()
    parse_case_no(f"(2000){code}执1号")  # the code must be one a case number can carry
    if not name:
        raise Invalid(COURT_NAME_MISSING)

    def known() -> AlreadyExists:
        return AlreadyExists(f"法院 {code} 已登记。 / court {code!r} already exists")

    if session.get(Court, code) is not None:
        raise known()
    court = Court(code=code, name=name, phone=phone, address=address)
    with unique_or(session, known):  # registered at once by another (two new cases of one court): one goes through
        session.add(court)
        session.flush()
    details = {"name": name, "phone": phone, "address": address}
    record_audit(session, actor=actor, action="court.create", target=code, details=details)
    return court


def update_court(session: Session, *, actor: Actor | None, code: str, changes: dict[str, str]) -> Court:
    court = get_court(session, code=code)
    for name, value in changes.items():
        if name not in COURT_FIELDS:
            raise ValueError(f"court field {name!r} cannot be changed")
        if name == "name" and not value.strip():
            raise Invalid(COURT_NAME_MISSING)
        setattr(court, name, value.strip())
    if not changes:
        return court
    session.flush()
    record_audit(session, actor=actor, action="court.update", target=code, details=changes)
    return court


def find_case(session: Session, *, case_no: str, for_update: bool = False) -> Case | None:
    """The case ``case_no`` names, whichever way it is spelt (:func:`~.case_numbers.case_no_spellings`);
    ``for_update`` locks its row (PostgreSQL, ``FOR NO KEY UPDATE``: :data:`~server.core.db.NO_KEY_UPDATE`) until
    the transaction ends."""
    spellings = case_no_spellings(case_no)
    query = select(Case).where(Case.case_no.in_(spellings))
    if for_update:
        # Only the case's row: its court is joined (nullable side of an outer join, which cannot be locked).
        query = query.with_for_update(of=Case, key_share=True).execution_options(populate_existing=True)
    cases = {case.case_no: case for case in session.scalars(query)}
    return next((cases[spelling] for spelling in spellings if spelling in cases), None)


def get_case(session: Session, *, case_no: str, for_update: bool = False) -> Case:
    """The case, or :class:`NotFound`. ``for_update`` locks its row until the transaction ends: whatever changes
    which seals a case has, or acts on all of them (binding, unbinding, filing or approving a removal), locks it
    first, so that those changes are seen whole, one after the other. Whatever locks two cases (a seal moving from
    one to the other) locks them in ``case_no`` order."""
    case = find_case(session, case_no=case_no, for_update=for_update)
    if case is None:
        raise NotFound(f"unknown case {case_no!r}")
    return case


def check_not_held(case: Case, *, through: str | None, doing: str) -> None:
    """:class:`Conflict` if ``case`` is held (:attr:`Case.held_by`) by something else than ``through``."""
    if case.held_by is not None and case.held_by != through:
        raise Conflict(
            f"案件 {case.case_no} 有正在办理的 {case.held_by}，此操作只能经由它进行。 / "
            f"case {case.case_no!r} is held by {case.held_by} (open): {doing} only through it"
        )


def hold_case(session: Session, *, case_no: str, holder: str | None) -> Case:
    """Mark the case held by ``holder`` (e.g. ``removal-request:12``), or release it with ``None``. Held, a case's
    seals are unbound, and the case is closed, only by whoever passes ``through=holder``."""
    case = get_case(session, case_no=case_no)
    if holder is not None and case.held_by not in (None, holder):
        raise Conflict(f"case {case.case_no!r} is already held by {case.held_by}")
    case.held_by = holder
    return case


def add_case(
    session: Session,
    *,
    actor: Actor | None,
    case_no: str,
    court: str = "",
    judge: str = "",
    judge_phone: str = "",
    address: str = "",
    sealed_property: str = "",
    ruling_no: str = "",
    applicant: str = "",
    debtor: str = "",
    seizure_expires_on: date | None = None,
) -> Case:
    """Register an enforcement case under its canonical number; raise :class:`~.case_numbers.InvalidCaseNumber` if
    the number is not one, :class:`AlreadyExists` if it is taken.

    ``court`` is the name of the court the number names: it registers that court the first time and must match its
    registered name afterwards (:class:`Conflict`); it may be left out once the court is known."""
    number = parse_case_no(case_no)

    def taken() -> AlreadyExists:
        return AlreadyExists(f"案件 {number.text} 已存在。 / case {number.text!r} already exists")

    if find_case(session, case_no=number.text) is not None:
        raise taken()
    _ensure_court(session, actor=actor, code=number.court_code, name=court)
    case = Case(
        case_no=number.text,
        court_code=number.court_code,
        judge=judge,
        judge_phone=judge_phone,
        address=address,
        sealed_property=sealed_property,
        ruling_no=ruling_no,
        applicant=applicant,
        debtor=debtor,
        seizure_expires_on=seizure_expires_on,
        status=CaseStatus.OPEN.value,
        status_changed_at=utc_now(),
    )
    with unique_or(session, taken):  # the same case registered at once (a number in two spellings too): one goes
        session.add(case)
        session.flush()
    details = {name: _plain(getattr(case, name)) for name in CASE_FIELDS}
    record_audit(session, actor=actor, action="case.create", target=case.case_no, case_no=case.case_no, details=details)
    return case


def _ensure_court(session: Session, *, actor: Actor | None, code: str, name: str) -> Court:
    """The court ``code`` a new case names, registered now under ``name`` if it is not yet — also when another case
    registers it at the same moment: then the one registered meanwhile is the case's, if its name is ``name``."""
    known = session.get(Court, code)
    if known is None:
        if not name.strip():
            raise Invalid(
                f"法院 {code} 尚未登记：请随案件填写法院名称（例如 无锡市滨湖区人民法院），"
                "或先登记该法院。 / "
                f"court {code!r} is not registered: give its name (e.g. 无锡市滨湖区人民法院) with "
                "the case, or register the court first"
            )
        try:
            return add_court(session, actor=actor, code=code, name=name)
        except AlreadyExists:  # registered meanwhile, and committed (our insert waited for it)
            known = get_court(session, code=code)
    if name.strip() and name.strip() != known.name:
        raise Conflict(
            f"法院 {code} 登记的名称是“{known.name}”，而不是“{name.strip()}”。 / "
            f"court {code!r} is {known.name!r}, not {name.strip()!r}"
        )
    return known


def update_case(session: Session, *, actor: Actor | None, case_no: str, changes: dict[str, object]) -> Case:
    """Change the descriptive fields of a case (its number, court and status are not changed here)."""
    case = get_case(session, case_no=case_no)
    for name, value in changes.items():
        if name not in CASE_FIELDS:
            raise ValueError(f"case field {name!r} cannot be changed")
        setattr(case, name, value)
    if not changes:
        return case
    session.flush()
    details = {name: _plain(value) for name, value in changes.items()}
    record_audit(session, actor=actor, action="case.update", target=case.case_no, case_no=case.case_no, details=details)
    return case


def set_case_status(
    session: Session,
    *,
    actor: Actor | None,
    case_no: str,
    status: CaseStatus,
    note: str = "",
    through: str | None = None,
) -> Case:
    """Move the case to ``status`` along :data:`CASE_TRANSITIONS`; raise :class:`Conflict` naming the current status
    if that move is not allowed, or if the case is closed while held (an open removal request) other than
    ``through`` its holder."""
    case = get_case(session, case_no=case_no, for_update=True)
    current = CaseStatus(case.status)
    if status not in CASE_TRANSITIONS[current]:
        raise Conflict(
            f"案件 {case.case_no} 目前为“{words('case_status', current.value)[0]}”，不能改为"
            f"“{words('case_status', status.value)[0]}”。 / "
            f"case {case.case_no!r} is {current.value}: it cannot become {status.value}"
        )
    if status is CaseStatus.CLOSED:
        check_not_held(case, through=through, doing="it is closed")
        bound = session.scalars(select(Seal.device_id).where(Seal.case_no == case.case_no)).all()
        if bound:
            raise Conflict(
                f"案件 {case.case_no} 仍绑定有封条（{'、'.join(bound)}），请先解除绑定。 / "
                f"case {case.case_no!r} still has seals bound ({', '.join(bound)}): remove them first"
            )
    case.status = status.value
    case.status_changed_at = utc_now()
    session.flush()
    details = {"from": current.value, "to": status.value, "note": note}
    record_audit(session, actor=actor, action="case.status", target=case.case_no, case_no=case.case_no, details=details)
    return case


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value
