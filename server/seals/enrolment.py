"""Enrolling a seal: registering it (and binding it, if a case is given) together with its MQTT account.

The one service behind ``seal-server seal add`` / ``seal rotate-password`` and ``POST /api/seals`` /
``POST /api/seals/{device_id}/mqtt-password``, so that a seal registered through either door can log in to the
broker and leaves the same audit entries. The caller commits, then hands the password over (it is shown once) and
rewrites the broker's files (:func:`server.seals.provisioning.apply_broker_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from sqlalchemy.orm import Session

from server.audit.service import Actor
from server.seals.models import MqttAccount, Seal, SealBinding
from server.seals.provisioning import NewCredentials, check_seal_name, seal_account
from server.seals.registry import add_seal, get_seal, register_seal
from server.seals.seal_keys import NO_COURT_KEYS, CourtKeys

#: What takes a seal moved by its registration off its old case (session, actor, the binding that ended, the new
#: case): :func:`server.removal.release.take_off_moved`, above this package, given by the caller.
OnMoved = Callable[[Session, Actor | None, SealBinding, str], None]


def enrol_seal(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    public_key: str,
    case_no: str | None = None,
    location: str | None = None,
    replace_key: bool = False,
    on_moved: OnMoved | None = None,
    reserved: Collection[str] = (),
    court_keys: CourtKeys = NO_COURT_KEYS,
) -> tuple[Seal, NewCredentials | None]:
    """Register a seal with its public key and give it an MQTT account.

    Without ``case_no`` the seal is new and bound to no case (:class:`AlreadyExists` if its id is taken); with one it
    is registered and bound there, or rebound if already registered (see :func:`register_seal`). A seal that moves
    there from another case must be taken off that one as by an unbinding by hand, in the same transaction: its
    commands pending for that case expire and its notices there are revoked, so that a disarm decided for the old
    case is not published to it (one the broker already holds for it names the old case, and the seal refuses it)
    and the paper on the old door no longer verifies. That is ``on_moved`` (session, actor,
    the binding that ended, the new case): :func:`server.removal.release.take_off_moved`, which lives above this
    package; without it a move is refused. The credentials are None when the seal already had an account (its
    password is kept; see :func:`new_seal_password`).

    A device id that names a broker account not a seal's — the court server's, ``reserved`` (the configured
    ``[mqtt] username``), any account of another kind — is refused with :class:`AlreadyExists`
    (:func:`server.seals.provisioning.check_seal_name`): its password is never handed out. A public key that is
    another seal's, or one of the court's own (``court_keys``: :func:`server.seals.seal_keys.court_public_keys`), is
    refused (:mod:`server.seals.seal_keys`).
    """
    if case_no is None:
        seal = add_seal(
            session,
            actor=actor,
            device_id=device_id,
            public_key=public_key,
            location=location or "",
            reserved=reserved,
            court_keys=court_keys,
        )
    else:
        registered = register_seal(
            session,
            actor=actor,
            device_id=device_id,
            case_no=case_no,
            public_key=public_key,
            location=location,
            replace_key=replace_key,
            reserved=reserved,
            court_keys=court_keys,
        )
        seal = registered.seal
        if registered.left is not None:
            if on_moved is None:
                raise RuntimeError(f"seal {device_id} moved to case {case_no} with nothing to take it off the old one")
            on_moved(session, actor, registered.left, seal.case_no or case_no)
    return seal, seal_account(session, actor=actor, device_id=seal.device_id, rotate=False)


def new_seal_password(
    session: Session, *, actor: Actor | None, device_id: str, reserved: Collection[str] = ()
) -> NewCredentials:
    """Give a registered seal a new MQTT password (or its account, if it has none yet); :class:`NotFound` for an
    unknown seal, :class:`AlreadyExists` for one whose device id names a broker account not a seal's (registered before
    such names were refused): that account's password is not the seal's to get."""
    seal = get_seal(session, device_id=device_id)
    check_seal_name(session, seal.device_id, reserved=reserved)
    rotate = session.get(MqttAccount, seal.device_id) is not None
    credentials = seal_account(session, actor=actor, device_id=seal.device_id, rotate=rotate)
    assert credentials is not None  # a new account or a new password
    return credentials
