"""Seals: the clerk registers them; an officer binds one to a case on site and unbinds it when it is removed."""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, requires, seal_in_history_with, seal_with
from server.api.params import CaseNoQuery, DeviceIdPath
from server.api.routing import ValidatedRoute
from server.api.schemas import (
    MqttPasswordPublic,
    SealBind,
    SealBindingPublic,
    SealCreate,
    SealEnrolledPublic,
    SealEnrolmentPublic,
    SealPartyPublic,
    SealPublic,
    SealRegistrationPublic,
)
from server.audit.models import AuditEntry
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.context import ServerContext
from server.core.base import utc_now
from server.core.live import Change
from server.errors import AlreadyExists, BrokerFilesNotWritten, Conflict, Invalid, ServerError
from server.notices.service import Revocation
from server.removal.release import release_seal
from server.seals.case_numbers import case_no_spellings
from server.seals.enrolment import enrol_seal, new_seal_password
from server.seals.models import Case, CaseStatus, Seal, SealBinding
from server.seals.provisioning import apply_broker_files, disable_seal_account
from server.seals.registry import (
    bind_seal,
    current_bindings,
    is_online,
    last_known_armed,
    seal_bindings,
)
from server.seals.seal_keys import court_public_keys

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/seals", tags=["seals"], route_class=ValidatedRoute)

NOT_FOUND: Responses = {404: {"description": "No such seal or case, or not one of yours"}}


def seal_public(session: Session, seal: Seal, *, offline_after_s: int, now: datetime | None = None) -> SealPublic:
    return seal_publics(session, [seal], offline_after_s=offline_after_s, now=now)[0]


def seal_publics(
    session: Session, seals: list[Seal], *, offline_after_s: int, now: datetime | None = None
) -> list[SealPublic]:
    """The seals as the API shows them: with their armed state and who installed them (their current binding)."""
    bindings = current_bindings(session, device_ids=[seal.device_id for seal in seals])
    names = usernames_by_id(session, {binding.bound_by for binding in bindings.values()})
    now = now or datetime.now(UTC)
    return [_seal_public(seal, bindings.get(seal.device_id), names, offline_after_s, now) for seal in seals]


def _seal_public(
    seal: Seal, binding: SealBinding | None, names: dict[int | None, str], offline_after_s: int, now: datetime
) -> SealPublic:
    return SealPublic(
        device_id=seal.device_id,
        case_no=seal.case_no,
        location=seal.location,
        registered_at=seal.registered_at,
        status=seal.status,
        status_changed_at=seal.status_changed_at,
        last_seen_at=seal.last_seen_at,
        last_event_at=seal.last_event_at,
        online=is_online(seal, now=now, offline_after_s=offline_after_s),
        armed=seal.armed,
        armed_at=seal.armed_at,
        installed_at=binding.bound_at if binding else None,
        installed_by=names.get(binding.bound_by) if binding and binding.bound_by is not None else None,
    )


def seal_views(
    session: Session, user: User, seals: list[Seal], *, offline_after_s: int
) -> list[SealPublic] | list[SealPartyPublic]:
    """The seals as ``user`` may see them: in full, or — without :attr:`Permission.SEAL_STATUS` (the debtor) —
    only whether each is in place and armed (not while its case is being lifted)."""
    shown = seal_publics(session, seals, offline_after_s=offline_after_s)
    if access.has_permission(user, Permission.SEAL_STATUS):
        return shown
    # Not while the seal's case is being lifted: the seal may stand disarmed before the officer has come.
    case_nos = {s.case_no for s in shown if s.case_no is not None}
    statuses = dict(session.execute(select(Case.case_no, Case.status).where(Case.case_no.in_(case_nos))).all())
    views = []
    for s in shown:
        hidden = s.case_no is not None and CaseStatus(statuses[s.case_no]).hides_armed_state
        views.append(
            SealPartyPublic(
                device_id=s.device_id,
                case_no=s.case_no,
                location=s.location,
                armed=None if hidden else s.armed,
                installed_at=s.installed_at,
                armed_hidden=hidden,
            )
        )
    return views


SealReader = Annotated[User, Depends(requires(Permission.SEAL_READ))]


@router.get("")
def list_seals(
    user: SealReader,
    session: SessionDep,
    context: ContextDep,
    case_no: CaseNoQuery = None,
) -> list[SealPublic] | list[SealPartyPublic]:
    """The seals you may see, with case, last status and last event time (the debtor: whether each is armed)."""
    query = select(Seal).where(access.seal_filter(session, user))
    if case_no is not None:
        query = query.where(Seal.case_no.in_(case_no_spellings(case_no)))
    seals = list(session.scalars(query.order_by(Seal.device_id)))
    return seal_views(session, user, seals, offline_after_s=context.settings.offline_after_s)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Device id taken, or the public key is another seal's or one of the court's own"}},
)
def register(
    body: SealCreate,
    clerk: Annotated[User, Depends(requires(Permission.SEAL_REGISTER))],
    session: SessionDep,
    context: ContextDep,
) -> SealEnrolledPublic:
    """Register a seal with its public key, bound to no case yet, and create its MQTT account (clerk only); the
    MQTT password is in the response, shown once."""
    try:
        seal, credentials = enrol_seal(
            session,
            actor=clerk,
            device_id=body.device_id,
            public_key=body.public_key,
            location=body.location,
            reserved={context.settings.mqtt.username},
            court_keys=court_public_keys(context.settings),
        )
    except (AlreadyExists, Conflict):
        raise  # the device id is taken (by a seal, or by a broker account not a seal's), or the key: 409, as documented
    except ValueError as exc:
        raise Invalid(str(exc)) from None  # 422, its detail in both languages (server.app)
    session.commit()
    context.live.publish([Change("seal", seal.device_id)])  # the clerk's overview shows it at once
    _sync_broker(session, context)
    public = seal_public(session, seal, offline_after_s=context.settings.offline_after_s)
    return SealEnrolledPublic(
        **public.model_dump(), mqtt_password=credentials.password if credentials is not None else None
    )


@router.post("/{device_id}/mqtt-password", responses=NOT_FOUND)
def rotate_mqtt_password(
    seal: Annotated[Seal, Depends(seal_with(Permission.SEAL_REGISTER))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> MqttPasswordPublic:
    """Give the seal a new MQTT password (or its account, if it has none), shown once (clerk only); the old one
    stops working when the broker reloads its files."""
    reserved = {context.settings.mqtt.username}
    credentials = new_seal_password(session, actor=clerk, device_id=seal.device_id, reserved=reserved)
    session.commit()
    in_force = _sync_broker(session, context)  # the password is shown once: it is answered even if not in force yet
    return MqttPasswordPublic(username=credentials.username, mqtt_password=credentials.password, in_force=in_force)


@router.post("/{device_id}/mqtt-disable", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def disable_mqtt_account(
    seal: Annotated[Seal, Depends(seal_with(Permission.SEAL_REGISTER))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> None:
    """Disable the seal's MQTT account (clerk only): the broker refuses it when it reloads its files. A new password
    (``POST …/mqtt-password``) enables it again. 404 for a seal without an account."""
    reserved = {context.settings.mqtt.username}
    disable_seal_account(session, actor=clerk, device_id=seal.device_id, reserved=reserved)
    session.commit()
    if not _sync_broker(session, context):  # a disabling not in force must not read as done (a stolen password)
        raise BrokerFilesNotWritten(
            f"封条 {seal.device_id} 的账号已在数据库中停用，但代理（broker）的文件未能改写，停用尚未生效；"
            "请运行 seal-server broker write-files。 / "
            f"seal {seal.device_id}'s account is disabled in the database, but the broker's files could not be "
            "rewritten: the broker still accepts it; run `seal-server broker write-files`"
        )


def _sync_broker(session: Session, context: ServerContext) -> bool:
    """After the commit: rewrite the broker's files and reload it; False if that failed. The accounts are stored
    either way, so a failure is logged (``seal-server broker write-files`` repeats it)."""
    try:
        logger.info("%s", apply_broker_files(session, context.settings.broker))
    except (OSError, ServerError):
        logger.exception("the broker's files could not be rewritten; run `seal-server broker write-files`")
        return False
    return True


@router.get("/{device_id}", responses=NOT_FOUND)
def read_seal(
    seal: Annotated[Seal, Depends(seal_with(Permission.SEAL_READ))],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> SealPublic | SealPartyPublic:
    """One seal (the debtor: whether it is in place and armed)."""
    return seal_views(session, user, [seal], offline_after_s=context.settings.offline_after_s)[0]


@router.get("/{device_id}/bindings", responses=NOT_FOUND)
def read_bindings(
    seal: Annotated[Seal, Depends(seal_in_history_with(Permission.SEAL_READ))], user: CurrentUser, session: SessionDep
) -> list[SealBindingPublic]:
    """The seal's bindings to the cases you may see, newest first: who bound and unbound it, and when (also after
    it left your case)."""
    return _bindings(session, user, seal)


@router.get("/{device_id}/enrolment", responses=NOT_FOUND)
def read_enrolment(
    seal: Annotated[Seal, Depends(seal_in_history_with(Permission.EVENT_READ))], user: CurrentUser, session: SessionDep
) -> SealEnrolmentPublic:
    """The seal's enrolled public key and its enrolment record: who registered it and when, every registration,
    its bindings to the cases you may see (whoever may read the seal's events; also after it left your case)."""
    query = select(AuditEntry).where(AuditEntry.action == "seal.register", AuditEntry.target == seal.device_id)
    entries = list(session.scalars(query.order_by(AuditEntry.id)))
    registrations = [
        SealRegistrationPublic(
            at=entry.at,
            by=entry.actor if entry.actor_id is not None else None,
            public_key=entry.details.get("public_key") if isinstance(entry.details, dict) else None,
        )
        for entry in entries
    ]
    current = next((r for r in reversed(registrations) if r.public_key == seal.public_key), None)
    return SealEnrolmentPublic(
        device_id=seal.device_id,
        public_key=seal.public_key,
        public_key_sha256=hashlib.sha256(base64.b64decode(seal.public_key)).hexdigest(),
        registered_at=seal.registered_at,
        registered_by=current.by if current is not None else None,
        registrations=registrations,
        bindings=_bindings(session, user, seal),
    )


def _bindings(session: Session, user: User, seal: Seal) -> list[SealBindingPublic]:
    visible = access.visible_case_nos(session, user)
    rows = [b for b in seal_bindings(session, device_id=seal.device_id) if visible is None or b.case_no in visible]
    names = usernames_by_id(session, {b.bound_by for b in rows} | {b.unbound_by for b in rows})
    return [
        SealBindingPublic(
            device_id=b.device_id,
            case_no=b.case_no,
            bound_at=b.bound_at,
            bound_by=names.get(b.bound_by),
            unbound_at=b.unbound_at,
            unbound_by=names.get(b.unbound_by),
        )
        for b in rows
    ]


@router.put("/{device_id}/binding", responses=NOT_FOUND | {409: {"description": "Already bound; unbind first"}})
def bind(
    device_id: DeviceIdPath, body: SealBind, user: CurrentUser, session: SessionDep, context: ContextDep
) -> SealPublic:
    """Bind the seal to a case of yours, on site (officer or clerk)."""
    access.case_for(session, user, body.case_no, Permission.SEAL_BIND)
    seal = access.seal_for(session, user, device_id, Permission.SEAL_BIND)
    binding = bind_seal(session, actor=user, device_id=seal.device_id, case_no=body.case_no, location=body.location)
    session.commit()
    context.live.publish([Change("binding", seal.device_id, binding.case_no)])  # the case's open pages show it
    return seal_public(session, seal, offline_after_s=context.settings.offline_after_s)


@router.delete(
    "/{device_id}/binding",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND
    | {409: {"description": "Bound to no case, or its case has an open removal request (which lifts it instead)"}},
)
def unbind(
    seal: Annotated[Seal, Depends(seal_with(Permission.SEAL_BIND))],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> None:
    """Unbind the seal from its case when it is removed (officer or clerk): its pending commands for the case expire
    and its notices there are revoked; the audit entry says whether it was still armed. While the case has an open
    removal request, its seals come off through that request."""
    armed = last_known_armed(session, device_id=seal.device_id)
    released = release_seal(
        session, actor=user, device_id=seal.device_id, now=utc_now(), reason=Revocation.UNBOUND, note="unbound by hand"
    )
    binding = released.binding
    session.commit()
    context.live.publish([Change("binding", seal.device_id, binding.case_no)])  # the case's open pages show it
    if armed:
        logger.warning("seal %s unbound from case %s by %s while armed", seal.device_id, binding.case_no, user.username)
