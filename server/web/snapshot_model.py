"""One picture of a case, as its dialog on the case page shows it: full size, when it was taken and received, its
SHA-256 — and the verdict on the signed event that names it. The court stores each event's envelope verbatim;
here those bytes are verified again, with the seal's enrolled keys (:func:`server.evidence.verdicts
.verify_stored_event`), and the picture's file is hashed again: the picture is the one the signed event names, and
its file is unchanged, or the dialog says which of the two is not so."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit.models import AuditEntry
from server.errors import NotFound
from server.evidence.models import Event, Snapshot
from server.evidence.snapshot_files import SnapshotStore
from server.evidence.verdicts import SignatureVerdict, verify_stored_event
from server.seals.models import Seal


@dataclass(frozen=True)
class SnapshotDetail:
    sha256: str
    snapshot: Snapshot
    event: Event
    verdict: SignatureVerdict
    named: bool  # the signed payload names this picture
    file_sha256: str | None  # the file's SHA-256 as read now; None: the file is missing

    @property
    def file_intact(self) -> bool:
        return self.file_sha256 == self.sha256

    @property
    def trustworthy(self) -> bool:
        return self.verdict.verified and self.named and self.file_intact


def enrolled_keys(session: Session, device_id: str) -> list[str]:
    """The seal's enrolled public keys: its current key first, then those it was registered with before (newest
    first), from the enrolment record (``seal.register`` entries of the audit log)."""
    current = session.scalar(select(Seal.public_key).where(Seal.device_id == device_id))
    keys = [current] if current else []
    query = select(AuditEntry.details).where(AuditEntry.action == "seal.register", AuditEntry.target == device_id)
    for details in session.scalars(query.order_by(AuditEntry.id.desc())):
        key = details.get("public_key") if isinstance(details, dict) else None
        if isinstance(key, str) and key not in keys:
            keys.append(key)
    return keys


def snapshot_detail(
    session: Session, *, case_no: str, event_id: int, sha256: str, store: SnapshotStore
) -> SnapshotDetail:
    """The picture ``sha256`` of event ``event_id`` of ``case_no``; :class:`NotFound` unless the event is the
    case's, names the picture, and the picture is stored for the case."""
    event = session.get(Event, event_id)
    listed = event.payload.get("snapshots") if event is not None else None
    if event is None or event.case_no != case_no or not isinstance(listed, list) or sha256 not in listed:
        raise NotFound(f"event {event_id} of case {case_no!r} names no picture {sha256}")
    query = select(Snapshot).where(Snapshot.sha256 == sha256, Snapshot.case_no == case_no)
    snapshot = session.scalars(query.limit(1)).first()
    if snapshot is None:
        raise NotFound(f"picture {sha256} has not arrived for case {case_no!r}")
    keys = enrolled_keys(session, event.device_id)
    verdict = verify_stored_event(event.raw, device_id=event.device_id, seq=event.seq, keys=keys)
    return SnapshotDetail(
        sha256=sha256,
        snapshot=snapshot,
        event=event,
        verdict=verdict,
        named=verdict.names_snapshot(sha256),
        file_sha256=store.hash_of(sha256),
    )
