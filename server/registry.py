"""Cases and seals: registering them and binding a seal to a case. Keyword-only functions on a session.

The caller owns the transaction (commit or roll back); these functions only add and check.
"""

from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import InvalidTopic, SignatureError, validate_device_id
from seal_protocol.signing import verify_key_from_b64
from server.errors import AlreadyExists, Conflict, NotFound
from server.models import Case, Seal, utc_now

CASE_NO_MAX = 64


def get_case(session: Session, *, case_no: str) -> Case:
    case = session.scalar(select(Case).where(Case.case_no == case_no))
    if case is None:
        raise NotFound(f"unknown case {case_no!r}")
    return case


def add_case(session: Session, *, case_no: str, court: str = "", judge: str = "", address: str = "") -> Case:
    """Register an enforcement case; raise :class:`AlreadyExists` if its number is taken."""
    case_no = case_no.strip()
    if not 1 <= len(case_no) <= CASE_NO_MAX:
        raise ValueError(f"a case number has 1 to {CASE_NO_MAX} characters, got {len(case_no)}")
    if session.scalar(select(Case.id).where(Case.case_no == case_no)) is not None:
        raise AlreadyExists(f"case {case_no!r} already exists")
    case = Case(case_no=case_no, court=court, judge=judge, address=address)
    session.add(case)
    session.flush()
    return case


def register_seal(
    session: Session,
    *,
    device_id: str,
    case_no: str,
    public_key: str,
    location: str | None = None,
    replace_key: bool = False,
) -> Seal:
    """Register ``device_id`` with its public key and bind it to ``case_no``; rebind it if already registered.

    A registered seal keeps its key: a different one is refused unless ``replace_key`` (a re-provisioned device),
    because a silently swapped key would let anyone holding the new one speak for the seal.
    """
    try:
        validate_device_id(device_id)
        key = public_key_b64_normalised(public_key)
    except (InvalidTopic, SignatureError) as exc:
        raise ValueError(str(exc)) from None
    get_case(session, case_no=case_no)
    seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
    if seal is None:
        seal = Seal(device_id=device_id, public_key=key, case_no=case_no, location=location or "")
        session.add(seal)
    else:
        if seal.public_key != key and not replace_key:
            raise Conflict(f"seal {device_id!r} is registered with another public key; pass replace_key to change it")
        seal.public_key = key
        seal.case_no = case_no
        if location is not None:
            seal.location = location
        seal.registered_at = utc_now()
    session.flush()
    return seal


def public_key_b64_normalised(text: str) -> str:
    """The canonical base64 form of an Ed25519 public key; raise ``SignatureError`` if it is not one."""
    return base64.b64encode(bytes(verify_key_from_b64(text))).decode("ascii")
