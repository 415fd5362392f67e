"""The audit log: one append-only row per human action (logins, failures, changes to cases, seals, users, alarms,
reads of evidence).

Call :func:`record_audit` in the same transaction as the change it records, so that both or neither are stored. The
entry names its actor (the user; ``cli:<name>`` for the command line, see :func:`acting_as`; ``-`` for an anonymous
caller), the case it concerns (``case_no``) and the notes given with the action (``details``). Its canonical JSON
(:func:`entry_record`) is stored with the row and appended as a leaf to the server's Merkle log when the transaction
commits (by the appender :mod:`server.evidence.log` installs, :func:`set_leaf_appender`, when :mod:`server` is
imported): the log's writer lock is then the last lock the transaction takes, as in the ingest, so the two cannot
deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session

from seal_protocol import canonical_json
from seal_protocol.envelope import utc_now_ms
from server.audit.models import AuditEntry
from server.core.base import utc_now
from server.core.whole_numbers import whole_numbers

NO_ACTOR = "-"

#: The actor of the entries recorded without a user: ``cli:<name>`` while a command-line command runs.
_process_actor: ContextVar[str | None] = ContextVar("audit_process_actor", default=None)

#: The entries of the session's open transaction that still need their leaf in the Merkle log.
_PENDING = "audit_pending_leaves"

LeafAppender = Callable[[Session, Sequence[AuditEntry]], None]
_appenders: list[LeafAppender] = []


class Actor(Protocol):
    """Whoever acted: a user (:class:`server.auth.models.User`). The audit log and the services that record into it
    need only these two attributes, so they do not depend on the auth package."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...


def cli_actor_name(name: str) -> str:
    """The actor of a command-line run by ``name`` (the OS user or ``--actor``): ``cli:name``."""
    name = name.strip()
    if not name:
        raise ValueError("the actor's name is empty")
    return f"cli:{name}"[:64]


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Record ``actor`` (e.g. ``cli:alice``) for the entries recorded without a user inside the block."""
    token = _process_actor.set(actor)
    try:
        yield
    finally:
        _process_actor.reset(token)


def set_leaf_appender(appender: LeafAppender) -> None:
    """Install the function that appends committed entries to the Merkle log (done by :mod:`server.evidence.log`)."""
    _appenders[:] = [appender]


def actor_name(actor: Actor | None) -> str:
    """Who acts: the user's name, else the command line's actor (:func:`acting_as`), else ``-`` (anonymous)."""
    return actor.username if actor is not None else (_process_actor.get() or NO_ACTOR)


def at_text(at: datetime) -> str:
    """``at`` as in the entry's record: UTC with milliseconds and ``Z``, as an envelope's ``ts``."""
    return utc_now_ms(at)


def entry_record(entry: AuditEntry) -> bytes:
    """The entry's leaf bytes: canonical JSON (RFC 8785 as :func:`seal_protocol.canonical_json` writes it)."""
    return canonical_json(
        {
            "kind": "audit",
            "id": entry.id,
            "at": at_text(entry.at),
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "case_no": entry.case_no,
            "details": entry.details,
        }
    )


def record_audit(
    session: Session,
    *,
    actor: Actor | None,
    action: str,
    target: str = "",
    case_no: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry; ``actor`` is the user, or ``None`` for the CLI (:func:`acting_as`) or an anonymous caller.

    ``action`` is a dotted verb such as ``case.create`` or ``alarm.ack``; ``target`` names the object (a case
    number, a device id, a username, an alarm id); ``case_no`` the case the action concerns, if any; ``details`` the
    notes and facts of the action (JSON). The caller commits; the entry's leaf is appended at the commit.
    """
    now = utc_now()
    entry = AuditEntry(
        id=_next_id(session),
        at=now.replace(microsecond=now.microsecond // 1000 * 1000),
        actor_id=actor.id if actor is not None else None,
        actor=actor_name(actor),
        action=action,
        target=target[:128],
        case_no=case_no,
        details=whole_numbers(details or {}, what=f"audit entry {action}"),  # (its record is in every bundle)
    )
    entry.record = entry_record(entry)
    session.add(entry)
    session.flush()
    session.info.setdefault(_PENDING, []).append(entry)
    return entry


def record_read(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target: str,
    case_no: str | None,
    details: dict[str, Any] | None,
    within: timedelta,
) -> AuditEntry | None:
    """Record a read of evidence by ``actor`` (:func:`record_audit`), unless the same read — same action, target,
    case and details — by the same user is recorded less than ``within`` ago: then ``None``. A page shown again, or
    an overview tile updated live, fetches its pictures again; each would otherwise be an entry and a leaf of the
    log, while nothing new was read. Two such reads at the same moment on PostgreSQL may both be recorded."""
    details = details or {}
    same_case = AuditEntry.case_no.is_(None) if case_no is None else AuditEntry.case_no == case_no
    recent = session.scalars(
        select(AuditEntry.details).where(
            AuditEntry.actor_id == actor.id,
            AuditEntry.action == action,
            AuditEntry.target == target[:128],
            same_case,
            AuditEntry.at >= utc_now() - within,
        )
    )
    if any(seen == details for seen in recent):
        return None
    return record_audit(session, actor=actor, action=action, target=target, case_no=case_no, details=details)


def _next_id(session: Session) -> int:
    """The new entry's id, known before the insert since the record (written with the row) contains it."""
    if session.get_bind().dialect.name == "postgresql":
        query = "SELECT nextval(pg_get_serial_sequence('audit_log', 'id'))"
    else:  # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE)
        query = "SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log"
    return int(session.execute(text(query)).scalar_one())


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()
    entries = [entry for entry in pending if inspect(entry).persistent]  # not those of a rolled-back savepoint
    if not entries:
        return
    if not _appenders:
        raise RuntimeError("audit entries need the Merkle log: server.evidence.log was not imported")
    _appenders[0](session, entries)


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
