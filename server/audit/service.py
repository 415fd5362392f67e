"""The audit log: one append-only row per human action (logins, failures, changes to cases, seals, users, alarms).

Call :func:`record_audit` in the same transaction as the change it records, so that both or neither are stored.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from server.audit.models import AuditEntry
from server.core.base import utc_now

NO_ACTOR = "-"


class Actor(Protocol):
    """Whoever acted: a user (:class:`server.auth.models.User`). The audit log and the services that record into it
    need only these two attributes, so they do not depend on the auth package."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...


def record_audit(
    session: Session,
    *,
    actor: Actor | None,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry; ``actor`` is the user, or ``None`` for the CLI or an anonymous caller.

    ``action`` is a dotted verb such as ``case.create`` or ``alarm.ack``; ``target`` names the object (a case
    number, a device id, a username, an alarm id). The caller commits.
    """
    user = actor
    entry = AuditEntry(
        at=utc_now(),
        actor_id=user.id if user is not None else None,
        actor=user.username if user is not None else NO_ACTOR,
        action=action,
        target=target[:128],
        details=details or {},
    )
    session.add(entry)
    session.flush()
    return entry
