"""A final request's record of its seals: each seal's progress (:class:`~server.removal.progress.SealProgress`)
as the transaction that made the request final (``lift``, ``abort``) read it, stored in that step
(:attr:`~server.removal.models.RemovalStep.seals`) and in its audit entry, and shown from then on as stored.

It is not rebuilt from timestamps: an answer is stamped when the ingest received it, not when it committed, so a
cut-off by time hides an ack the lifting relied on (received after the handler read its clock, committed before it
read the seals) or lets one received before an abort but committed after it change the record afterwards. A request
made final before the record was stored (migration 0019) is still rebuilt as of its last step
(:func:`server.removal.disarm.as_of`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.commands.state import CommandState
from server.removal.models import RemovalRequest, RemovalStep
from server.removal.progress import SealProgress, SealStatus
from server.removal.state import RemovalAction

_TIMES = ("issued_at", "expires_at", "answered_at")
#: How a withdrawn disarm's command stands in an aborted request's record (the command itself is ``expired``: the
#: commands' states stay pending, acknowledged, rejected, expired; its ``command.expire`` audit entry says why).
WITHDRAWN = "withdrawn"


def record_of(progress: Iterable[SealProgress]) -> list[dict[str, Any]]:
    """The seals' progress as JSON, to be stored with the step that makes the request final."""
    record = []
    for p in progress:
        times = {name: _iso(getattr(p, name)) for name in _TIMES}
        record.append(
            {
                "device_id": p.device_id,
                "status": p.status.value,
                "command_id": p.command_id,
                "command_state": p.command_state,
                **times,
                "reason": p.reason,
                "commands": p.commands,
                "armed": p.armed,
                "found": p.found,
                "waived": p.waived.value if p.waived is not None else None,
            }
        )
    return record


def withdrawn_in(progress: Iterable[SealProgress], withdrawn: Iterable[int], at: datetime) -> list[SealProgress]:
    """``progress`` as an abort records it: a seal shown by a disarm the abort withdrew (``withdrawn``: the command
    ids), or by one marked expired before its expiry (a record stored before withdrawals were recorded so: the
    dispatcher marks a command expired only once its expiry is past, and the case's seals cannot be unbound while a
    request holds it), is :attr:`~SealStatus.WITHDRAWN`, its command ``withdrawn`` — never "waiting for the seal,
    send again" on a request no disarm will be sent for."""
    ids = set(withdrawn)
    return [
        replace(p, status=SealStatus.WITHDRAWN, command_state=WITHDRAWN)
        if p.status is SealStatus.WAITING_FOR_SEAL
        and (p.command_id in ids or (p.command_state == CommandState.EXPIRED and p.expires_at > at))
        else p
        for p in progress
    ]


def stored_record(session: Session, request: RemovalRequest) -> list[SealProgress] | None:
    """The record stored when ``request`` became final, by device id; ``None`` if none was (it is open, or became
    final before records were stored). An aborted request's disarms withdrawn by the abort are shown so
    (:func:`withdrawn_in`), also in a record stored before they were recorded as withdrawn."""
    query = (
        select(RemovalStep.seals, RemovalStep.at, RemovalStep.action)
        .where(RemovalStep.request_id == request.id, RemovalStep.seals.is_not(None))
        .order_by(RemovalStep.id.desc())
        .limit(1)
    )
    row = session.execute(query).first()
    if row is None:
        return None
    record, at, action = row
    progress = sorted((_progress(seal) for seal in record), key=lambda p: p.device_id)
    return withdrawn_in(progress, (), at) if action == RemovalAction.ABORT else progress


def counted_until(now: datetime, progress: Sequence[SealProgress]) -> datetime:
    """``now``, or the latest answer ``progress`` counts if later: a step dated by the clock its handler read before
    the answer it relied on was received (and committed) would read out of order in the history."""
    return max([now, *(p.answered_at for p in progress if p.answered_at is not None)])


def _progress(seal: dict[str, Any]) -> SealProgress:
    waived = seal["waived"]
    return SealProgress(
        device_id=seal["device_id"],
        status=SealStatus(seal["status"]),
        command_id=seal["command_id"],
        command_state=seal["command_state"],
        issued_at=datetime.fromisoformat(seal["issued_at"]),
        expires_at=datetime.fromisoformat(seal["expires_at"]),
        answered_at=_time(seal["answered_at"]),
        reason=seal["reason"],
        commands=seal["commands"],
        armed=seal["armed"],
        found=seal["found"],
        waived=SealStatus(waived) if waived is not None else None,
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
