"""Seals: registering them and binding a seal to a case (courts and cases: :mod:`server.seals.cases`).

Keyword-only functions on a session, one per business action (register a seal, bind, unbind), each writing its own audit
entry with its ``actor`` (a user, or ``None`` for the command line); the API and the CLI both call them. Every
binding and unbinding is kept in ``seal_bindings`` (who, when), so that an event that arrives late can be attributed
to the case its seal was bound to when it happened. The caller owns the transaction (commit or roll back); these
functions only add, check and record.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seal_protocol import InvalidTopic, SignatureError, validate_device_id
from server.alarms.service import close_left_conditions
from server.audit.service import Actor, record_audit
from server.core.base import utc_now
from server.core.db import NO_KEY_UPDATE
from server.errors import AlreadyExists, Conflict, NotFound
from server.evidence.models import Event
from server.evidence.queries import last_known_armed
from server.seals.cases import check_not_held, get_case, set_case_status
from server.seals.models import Case, CaseStatus, Seal, SealBinding
from server.seals.provisioning import check_seal_name
from server.seals.seal_keys import NO_COURT_KEYS, CourtKeys, check_key_free, public_key_b64_normalised, store_key
from server.words import words

#: A case a seal may be bound to: a case being lifted (its seals are being disarmed), lifted or closed takes none.
BINDABLE = frozenset({CaseStatus.OPEN, CaseStatus.SEALED})


def get_seal(session: Session, *, device_id: str) -> Seal:
    seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
    if seal is None:
        raise NotFound(f"unknown seal {device_id!r}")
    return seal


def add_seal(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    public_key: str,
    location: str = "",
    reserved: Collection[str] = (),
    court_keys: CourtKeys = NO_COURT_KEYS,
) -> Seal:
    """Register a new seal with its public key, bound to no case yet; raise :class:`AlreadyExists` if known, or if
    its device id names a broker account not a seal's (``reserved``: the configured server's; see
    :func:`server.seals.provisioning.check_seal_name`). A key that is another seal's or one of the court's own
    (``court_keys``: :func:`server.seals.seal_keys.court_public_keys`) is refused (409)."""
    device_id, key = _checked_identity(session, device_id, public_key, reserved)
    if session.scalar(select(Seal.id).where(Seal.device_id == device_id)) is not None:
        raise AlreadyExists(f"封条 {device_id} 已存在。 / seal {device_id!r} already exists")
    check_key_free(session, device_id=device_id, key=key, court_keys=court_keys)
    seal = Seal(device_id=device_id, case_no=None, location=location)
    store_key(session, seal, key)
    _record_registration(session, actor, seal)
    return seal


def bind_seal(
    session: Session, *, actor: Actor | None, device_id: str, case_no: str, location: str | None = None
) -> SealBinding:
    """Bind an unbound seal to a case; raise :class:`Conflict` if it is bound (unbind it first)."""
    seal = get_seal(session, device_id=device_id)
    case_no = get_case(session, case_no=case_no, for_update=True).case_no  # the case's seals change: lock it first
    session.refresh(seal, with_for_update=NO_KEY_UPDATE)
    if seal.case_no is not None:
        raise Conflict(
            f"封条 {device_id} 已绑定于案件 {seal.case_no}，请先解除绑定。 / "
            f"seal {device_id!r} is bound to case {seal.case_no!r}; unbind it first"
        )
    return _bind(session, seal, case_no=case_no, actor=actor, location=location, now=utc_now())


def unbind_seal(
    session: Session, *, actor: Actor | None, device_id: str, through: str | None = None, note: str = ""
) -> SealBinding:
    """End the seal's current binding; raise :class:`Conflict` if it is bound to no case, or if its case is held
    (an open removal request) by another than ``through``. The audit entry says whether the seal was still armed
    (it should have been disarmed after an approved removal), and ``note``.

    This is the binding alone: :func:`server.removal.release.release_seal` also ends what the binding carried (the
    commands pending for the case, the notices on the door); the API and the lifting call that."""
    seal = get_seal(session, device_id=device_id)
    if seal.case_no is None:
        raise Conflict(f"封条 {device_id} 未绑定任何案件。 / seal {device_id!r} is not bound to a case")
    case = get_case(session, case_no=seal.case_no, for_update=True)  # the case's seals change: lock it first
    session.refresh(seal, with_for_update=NO_KEY_UPDATE)
    if seal.case_no != case.case_no:
        raise _moved_meanwhile(device_id)
    return _unbind(session, seal, actor=actor, now=utc_now(), through=through, note=note)


def seal_bindings(session: Session, *, device_id: str) -> list[SealBinding]:
    """The seal's bindings, newest first."""
    query = select(SealBinding).where(SealBinding.device_id == device_id)
    return list(session.scalars(query.order_by(SealBinding.bound_at.desc(), SealBinding.id.desc())))


def current_bindings(session: Session, *, device_ids: list[str]) -> dict[str, SealBinding]:
    """The bindings that last (``unbound_at`` is null) of these seals, by device id."""
    query = select(SealBinding).where(SealBinding.device_id.in_(device_ids), SealBinding.unbound_at.is_(None))
    return {binding.device_id: binding for binding in session.scalars(query)}


@dataclass(frozen=True)
class Registered:
    seal: Seal
    left: SealBinding | None  # the binding to another case that the registration ended (the seal moved), if any


def register_seal(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    case_no: str,
    public_key: str,
    location: str | None = None,
    replace_key: bool = False,
    reserved: Collection[str] = (),
    court_keys: CourtKeys = NO_COURT_KEYS,
) -> Registered:
    """Register ``device_id`` with its public key and bind it to ``case_no``; rebind it if already registered.

    A registered seal keeps its key: a different one is refused unless ``replace_key`` (a re-provisioned device),
    because a silently swapped key would let anyone holding the new one speak for the seal. Even then it is refused
    once the court stores events of the device: a seal never makes a new key for a chain it has begun
    (``docs/reliability.md``), so a new key signs a new chain from seq 1, which the court, keeping the old chain,
    would quarantine (``replayed_seq``, unreceipted) for ever. Such a device is registered under a new device id.

    A seal bound to another case moves: its binding there ends (as :func:`unbind_seal`, refused while that case is
    held) and the new one begins. This is the bindings alone: :func:`server.seals.enrolment.enrol_seal` also ends
    what the old binding carried (the commands pending for that case, the notices on its door).

    A device id that names a broker account not a seal's is refused, as by :func:`add_seal`; so is a key that is
    another seal's or one of the court's own (``court_keys``), a new seal's or a replacing one.
    """
    device_id, key = _checked_identity(session, device_id, public_key, reserved)
    seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
    if seal is None or seal.public_key != key:  # its own key, registered before the check was: not taken from anyone
        check_key_free(session, device_id=device_id, key=key, court_keys=court_keys)
    moved_from = seal.case_no if seal is not None else None
    case = _lock_cases(session, case_no=case_no, moved_from=moved_from)
    if CaseStatus(case.status) not in BINDABLE:
        raise Conflict(
            f"案件 {case.case_no} 目前为“{words('case_status', case.status)[0]}”，不能再登记封条。 / "
            f"case {case.case_no!r} is {case.status}: no seal can be registered to it"
        )
    case_no = case.case_no
    now = utc_now()
    if seal is None:
        seal = Seal(device_id=device_id, case_no=None, location=location or "")
        store_key(session, seal, key)
    else:
        session.refresh(seal, with_for_update=NO_KEY_UPDATE)
        if seal.case_no != moved_from:
            raise _moved_meanwhile(device_id)
        if seal.public_key != key and not replace_key:
            raise Conflict(
                f"封条 {device_id} 登记的是另一个公钥；如需更换，请指明 replace_key。 / "
                f"seal {device_id!r} is registered with another public key; pass replace_key to change it"
            )
        if seal.public_key != key and _chain_begun(session, device_id):
            raise Conflict(
                f"封条 {device_id} 已有以原公钥签名的事件：换了密钥的设备会从序号 1 重新开始，其事件将永远被隔离；"
                "请以新的设备编号登记重新配置的设备（并解除本封条的绑定）。 / "
                f"seal {device_id!r} has events stored under its key: a device with a new key starts its chain again "
                "at seq 1, and every event of it would be quarantined (replayed_seq) for ever; register the "
                "re-provisioned device under a new device id (and unbind this one)"
            )
        if seal.public_key != key:
            store_key(session, seal, key)
        seal.registered_at = now
    left = None
    if seal.case_no != case_no:
        if seal.case_no is not None:  # moved from another case (locked above): that case's seals change too
            left = _unbind(session, seal, actor=actor, now=now, note="moved to another case")
        _bind(session, seal, case_no=case_no, actor=actor, location=location, now=now, audit=False)
    elif location is not None:
        seal.location = location
    session.flush()
    _record_registration(session, actor, seal)
    return Registered(seal, left)


def _lock_cases(session: Session, *, case_no: str, moved_from: str | None) -> Case:
    """Lock the case a seal is registered to and, if it moves, the case it leaves (both cases' seals change), in
    ``case_no`` order: two registrations moving seals between the same two cases in opposite directions would
    otherwise each hold one case and wait for the other. Return the case registered to."""
    target = get_case(session, case_no=case_no).case_no  # as stored: the spelling the order goes by
    numbers = sorted({target} | ({moved_from} if moved_from is not None else set()))
    locked = {number: get_case(session, case_no=number, for_update=True) for number in numbers}
    return locked[target]


def _chain_begun(session: Session, device_id: str) -> bool:
    """Whether the court stores an event of ``device_id`` (its chain begun at the court)."""
    return session.scalar(select(Event.id).where(Event.device_id == device_id).limit(1)) is not None


def _record_registration(session: Session, actor: Actor | None, seal: Seal) -> None:
    """The enrolment record (``GET /api/seals/{id}/enrolment`` reads it): who registered which key, bound where."""
    details = {"case_no": seal.case_no, "public_key": seal.public_key}
    record_audit(
        session, actor=actor, action="seal.register", target=seal.device_id, case_no=seal.case_no, details=details
    )


def _checked_identity(session: Session, device_id: str, public_key: str, reserved: Collection[str]) -> tuple[str, str]:
    try:
        validate_device_id(device_id)
        key = public_key_b64_normalised(public_key)
    except (InvalidTopic, SignatureError) as exc:
        raise ValueError(str(exc)) from None
    check_seal_name(session, device_id, reserved=reserved)
    return device_id, key


def _bind(
    session: Session,
    seal: Seal,
    *,
    case_no: str,
    actor: Actor | None,
    location: str | None,
    now: datetime,
    audit: bool = True,
) -> SealBinding:
    case = get_case(session, case_no=case_no)
    if CaseStatus(case.status) not in BINDABLE:
        raise Conflict(
            f"案件 {case_no} 目前为“{words('case_status', case.status)[0]}”，不能再绑定封条。 / "
            f"case {case_no!r} is {case.status}: no seal can be bound to it"
        )
    seal.case_no = case_no
    if location is not None:
        seal.location = location
    bound_by = actor.id if actor else None
    binding = SealBinding(device_id=seal.device_id, case_no=case_no, bound_at=now, bound_by=bound_by)
    session.add(binding)
    session.flush()
    if audit:  # a registration that binds says so in its own entry
        details = {"case_no": case_no, "location": seal.location}
        record_audit(
            session, actor=actor, action="seal.bind", target=seal.device_id, case_no=case.case_no, details=details
        )
    if case.status == CaseStatus.OPEN:
        set_case_status(session, actor=actor, case_no=case_no, status=CaseStatus.SEALED, note="seal bound")
    return binding


def _unbind(
    session: Session, seal: Seal, *, actor: Actor | None, now: datetime, through: str | None = None, note: str = ""
) -> SealBinding:
    assert seal.case_no is not None
    doing = f"seal {seal.device_id!r} is unbound"
    check_not_held(get_case(session, case_no=seal.case_no), through=through, doing=doing)
    armed = last_known_armed(session, device_id=seal.device_id)
    binding = session.scalar(
        select(SealBinding).where(SealBinding.device_id == seal.device_id, SealBinding.unbound_at.is_(None))
    )
    if binding is None:  # bound before binding history existed
        binding = SealBinding(device_id=seal.device_id, case_no=seal.case_no, bound_at=seal.registered_at)
        session.add(binding)
    binding.unbound_at = now
    binding.unbound_by = actor.id if actor else None
    close_left_conditions(session, device_id=seal.device_id, case_no=seal.case_no, at=now)
    seal.case_no = None
    seal.location = ""  # the premises of the case it left: not the business of whoever reads it next
    # Nor is its armed state: unknown until it says so in its next case (armed_seq stays: the state moves forward
    # only, and an event of the case it left does not move it: server.ingest.rows).
    seal.armed = None
    seal.armed_at = None
    session.flush()
    details = {"case_no": binding.case_no, "armed": armed, "note": note}
    record_audit(
        session, actor=actor, action="seal.unbind", target=seal.device_id, case_no=binding.case_no, details=details
    )
    case = get_case(session, case_no=binding.case_no)
    left = session.scalar(select(Seal.id).where(Seal.case_no == case.case_no).limit(1))
    if case.status == CaseStatus.SEALED and left is None:  # a removal (lifting) settles the status itself
        set_case_status(session, actor=actor, case_no=case.case_no, status=CaseStatus.OPEN, note="last seal unbound")
    return binding


def is_online(seal: Seal, *, now: datetime, offline_after_s: int) -> bool:
    """Reported online, and heard from recently enough (a lost Last Will must not leave a seal online forever)."""
    return (
        seal.status == "online"
        and seal.last_seen_at is not None
        and now - seal.last_seen_at <= timedelta(seconds=offline_after_s)
    )


def count_online(session: Session, *, now: datetime, offline_after_s: int) -> int:
    cutoff = now - timedelta(seconds=offline_after_s)
    query = select(func.count(Seal.id)).where(Seal.status == "online", Seal.last_seen_at >= cutoff)
    return int(session.scalar(query) or 0)


def _moved_meanwhile(device_id: str) -> Conflict:
    return Conflict(f"封条 {device_id} 刚被改绑，请刷新后再试。 / seal {device_id!r} was moved meanwhile; look again")
