"""Taking a seal off its case, and ending what its binding there carried: the one service behind the officer's or
clerk's unbinding by hand (``DELETE /api/seals/{device_id}/binding``) and the lifting of a seizure; and what a seal
moved to another case by its registration leaves behind (:func:`end_binding`).

Unbinding (:func:`server.seals.registry.unbind_seal`) is the binding alone, refused while an open removal request
holds the case (except through that request). Here, besides: the commands still pending for the case expire
(recorded), so that a disarm decided for one case is not published to the seal once it seals another's property
(one the broker already took for the seal's session may still reach it: it names its case under the court's
signature, and the seal refuses it as ``wrong_case``); and
the seal's notices for the case are revoked (recorded, with why), so that the paper left on the door no longer
verifies as a standing seizure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from server.audit.service import Actor
from server.commands.service import expire_unbound
from server.core.base import utc_now
from server.notices.service import Revocation, revoke_seal_notices
from server.seals.models import SealBinding
from server.seals.registry import unbind_seal


@dataclass(frozen=True)
class Released:
    binding: SealBinding  # the binding that ended
    expired_commands: list[int]
    revoked_notices: list[int]


def release_seal(
    session: Session,
    *,
    actor: Actor | None,
    device_id: str,
    now: datetime,
    reason: Revocation,
    note: str = "",
    through: str | None = None,
) -> Released:
    """Unbind the seal (``through`` the holder of its case, if held), expire its pending commands for the case and
    revoke its notices there with ``reason``. The caller commits."""
    binding = unbind_seal(session, actor=actor, device_id=device_id, through=through, note=note)
    return end_binding(session, actor=actor, binding=binding, now=now, reason=reason, note=note)


def end_binding(
    session: Session, *, actor: Actor | None, binding: SealBinding, now: datetime, reason: Revocation, note: str = ""
) -> Released:
    """End what ``binding`` carried, once it has ended (the seal was unbound, or moved to another case): expire the
    seal's commands pending for its case and revoke its notices there with ``reason``, both recorded with ``note``.
    The caller commits."""
    why = f"seal unbound from case {binding.case_no}" + (f": {note}" if note else "")
    expired = expire_unbound(session, now=now, device_id=binding.device_id, actor=actor, note=why)
    revoked = revoke_seal_notices(
        session, actor=actor, device_id=binding.device_id, case_no=binding.case_no, now=now, reason=reason, note=why
    )
    return Released(binding, [command_id for command_id, _ in expired], revoked)


def take_off_moved(session: Session, actor: Actor | None, left: SealBinding, case_no: str) -> None:
    """A seal its registration moved to ``case_no`` is taken off the case of ``left`` as by an unbinding by hand
    (:func:`end_binding`, ``unbound``): :func:`server.seals.enrolment.enrol_seal`'s ``on_moved``."""
    end_binding(
        session, actor=actor, binding=left, now=utc_now(), reason=Revocation.UNBOUND, note="moved to another case"
    )
