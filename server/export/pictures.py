"""The bundle's list of pictures (``snapshots.jsonl``): each picture an exported event names, whether the court
holds it, and if not, why — as far as the signed events say (``docs/evidence.md``, "Snapshots").

A picture the court does not hold is one of these: the seal signed (a ``snapshot_taken``'s ``not_stored``) that it
could not store it — the seal whose event names the picture, in the follow-up of that very event (its
``trigger_seq``), never another seal's word —, so it never existed to be sent (``not_stored_by_seal``); the seal
signed (a ``snapshot_lost``) that it lost the picture it had stored and named in an earlier event of its own, so it
can never be sent (``lost_on_seal``: again never another seal's word); the court never received it, and no event of
the bundle says why (``not_received``: lost on the way, thinned on the seal, or withheld); the court received bytes
that hash to its name and refused them (``refused_by_court``: kept in the quarantine, :mod:`server.export.refused`);
or the court received it and no longer holds it (``lost``).

Two seals of a case may name the same bytes (two covered lenses: one black frame), and the court keeps one row per
seal that delivered them: a line takes the row of a seal whose exported event names the picture, the first by
device id, and only when none of those delivered it another seal's of the case (again the first by device id).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from seal_protocol.wirejson import loads_wire_json
from seal_verify.snapshot_checks import every_seal  # the verifier's own rule: the exporter writes what it checks
from server.evidence.models import Snapshot
from server.evidence.queries import named_pictures
from server.export.refused import refused_pictures

JsonDict = dict[str, Any]

#: Why a picture an event names is not in the bundle (``absent_reason``).
NOT_STORED_BY_SEAL = "not_stored_by_seal"
LOST_ON_SEAL = "lost_on_seal"
NOT_RECEIVED = "not_received"
LOST = "lost"
REFUSED_BY_COURT = "refused_by_court"


class SignedLine(Protocol):
    """An exported event line: the stored bytes and the seal's id and seq."""

    raw: bytes
    device_id: str
    seq: int


class Signed(NamedTuple):
    """What the export reads of an exported event's signed payload: the pictures it names, and the seal's word on
    pictures it could not store (a ``snapshot_taken``) or lost (a ``snapshot_lost``). Only these are kept, not the
    payload: an export may read hundreds of thousands of events."""

    device_id: str
    seq: int
    #: The SHA-256s of the pictures it names (``snapshots`` list, or ``snapshot``).
    names: tuple[str, ...]
    #: A ``snapshot_taken``'s ``trigger_seq`` (``None`` if not an integer) and the pictures its ``not_stored`` lists,
    #: as (sha256, reason) — the reason ``None`` if the seal signed none that is text; ``None`` for any other event.
    not_stored: tuple[int | None, tuple[tuple[str, str | None], ...]] | None
    #: The picture a ``snapshot_lost`` says its seal lost (``None`` if it names none), with its ``reason`` and where
    #: the seal keeps its file (``kept``; each as above); ``None`` for any other event.
    lost: tuple[str | None, str | None, str | None] | None

    @classmethod
    def of(cls, line: SignedLine) -> Signed:
        envelope = loads_wire_json(line.raw, what="event")
        payload = envelope.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        names = tuple(named_pictures(payload))
        not_stored, lost = None, None
        if envelope.get("type") == "snapshot_taken":
            listed = payload.get("not_stored")
            items = [item for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
            trigger_seq = payload.get("trigger_seq")
            not_stored = (
                trigger_seq if type(trigger_seq) is int else None,
                tuple((i["sha256"], _text(i.get("reason"))) for i in items if isinstance(i.get("sha256"), str)),
            )
        elif envelope.get("type") == "snapshot_lost":
            lost = (_text(payload.get("snapshot")), _text(payload.get("reason")), _text(payload.get("kept")))
        return cls(line.device_id, line.seq, names, not_stored, lost)

    def statement(self, reason: str | None) -> JsonDict:
        """How a line of ``snapshots.jsonl`` lists this event's word on a picture."""
        return {"device_id": self.device_id, "reason": reason, "seq": self.seq}


def snapshot_records(
    session: Session, case_no: str, events: Iterable[SignedLine]
) -> tuple[list[JsonDict], dict[str, bytes]]:
    """One ``snapshots.jsonl`` line per picture the exported ``events`` name, sorted by SHA-256; and the bytes the
    court refused of those that are the picture (``refused/<sha256>.jpg``), by SHA-256.

    A seal speaks for the pictures of its own events, never for another seal's: a ``snapshot_taken``'s
    ``not_stored`` counts for a picture only when its ``trigger_seq`` is an exported event of the same seal that
    names the picture, a ``snapshot_lost`` only when an earlier exported event of the same seal names it. A picture
    is ``not_stored_by_seal`` (or ``lost_on_seal``) only when *every* seal whose exported events, other than a
    ``snapshot_lost``, name it signed so: two seals may name one black frame, and one seal's word says nothing of
    the other's copy."""
    # Only the events that name a picture or speak of one are kept (a few bytes each): most are heartbeats.
    signed = [event for event in map(Signed.of, events) if event.names or event.not_stored or event.lost]
    named: dict[str, set[str]] = {}  # sha256 -> the seals whose exported events name it
    naming: dict[str, set[str]] = {}  # sha256 -> the seals whose exported events other than a snapshot_lost name it
    for event in signed:
        for sha in event.names:
            named.setdefault(sha, set()).add(event.device_id)
            if event.lost is None:
                naming.setdefault(sha, set()).add(event.device_id)
    said, lost = not_stored_statements(signed), lost_statements(signed)
    held: dict[str, Snapshot] = {}
    for candidate in session.scalars(select(Snapshot).where(Snapshot.case_no == case_no)):
        if candidate.sha256 in named:
            known = held.get(candidate.sha256)
            seals = named[candidate.sha256]
            if known is None or _preference(candidate, seals) < _preference(known, seals):
                held[candidate.sha256] = candidate
    refused = refused_pictures(session, named)
    records = []
    for sha in sorted(named):
        row = held.get(sha)
        statements, losses = said.get(sha, []), lost.get(sha, [])
        records.append(
            {
                "absent_reason": _absent_reason(
                    row,
                    every_seal(statements, naming.get(sha, set())),
                    every_seal(losses, naming.get(sha, set())),
                    refused.is_picture(sha),
                ),
                "device_id": row.device_id if row else min(named[sha]),
                "not_stored": statements,
                "present": row is not None,
                "received_at": utc_now_ms(row.received_at) if row else None,
                "refused": refused.entries.get(sha, []),
                "sha256": sha,
                "size": row.size if row else None,
                "snapshot_lost": losses,
            }
        )
    return records, {sha: data for sha, data in refused.pictures.items() if sha not in held}


def not_stored_statements(signed: list[Signed]) -> dict[str, list[JsonDict]]:
    """sha256 -> the seals' signed statements that they could not store the picture (``not_stored``), by seal and
    seq: a ``snapshot_taken``'s, for a picture its trigger (``trigger_seq``, same seal) names."""
    naming = {(event.device_id, event.seq): event.names for event in signed if event.names}
    said: dict[str, list[JsonDict]] = {}
    for event in signed:
        if event.not_stored is None:
            continue
        trigger_seq, listed = event.not_stored
        trigger = naming.get((event.device_id, trigger_seq), ()) if trigger_seq is not None else ()
        for sha, reason in listed:
            if sha in trigger:
                said.setdefault(sha, []).append(event.statement(reason))
    return {sha: _by_seal(items) for sha, items in said.items()}


def lost_statements(signed: list[Signed]) -> dict[str, list[JsonDict]]:
    """sha256 -> the seals' signed statements that they lost the picture (``snapshot_lost``), by seal and seq: a
    ``snapshot_lost``'s, for a picture an earlier event of the same seal names — its own ``snapshot`` does not count
    (another seal's ``snapshot_lost`` names the picture too, and is no word on this seal's picture) — and only after
    the seal's last event naming it (named again, it was queued again: an earlier loss is no word on it)."""
    last: dict[tuple[str, str], int] = {}  # (seal, sha256) -> the highest seq of its events naming it
    losses: list[tuple[Signed, str, str | None, str | None]] = []
    for event in signed:
        if event.lost is not None:  # a snapshot_lost names no picture for another one
            sha, reason, kept = event.lost
            if sha is not None:
                losses.append((event, sha, reason, kept))
            continue
        for sha in event.names:
            last[(event.device_id, sha)] = max(event.seq, last.get((event.device_id, sha), event.seq))
    said: dict[str, list[JsonDict]] = {}
    for event, sha, reason, kept in losses:
        if last.get((event.device_id, sha), event.seq) < event.seq:
            said.setdefault(sha, []).append(event.statement(reason) | {"kept": kept})
    return {sha: _by_seal(items) for sha, items in said.items()}


def _by_seal(statements: list[JsonDict]) -> list[JsonDict]:
    return sorted(statements, key=lambda s: (s["device_id"], s["seq"]))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _preference(row: Snapshot, naming: set[str]) -> tuple[bool, str]:
    """The order rows of one picture are chosen in: a seal whose exported event names it first, then by device id."""
    return row.device_id not in naming, row.device_id


def _absent_reason(row: Snapshot | None, not_stored: bool, lost: bool, refused: bool) -> str | None:
    """``None`` when the court holds the picture (another trigger's identical frame may have brought the bytes a
    seal said it could not store, or lost, once); else why not: bytes that are the picture in the quarantine say the
    court received and refused it, whatever the seal said; then every naming seal's word that it could not store it
    (``not_stored``), then every naming seal's word that it lost it (``lost``)."""
    if row is not None:
        return None
    if refused:
        return REFUSED_BY_COURT
    if not_stored:
        return NOT_STORED_BY_SEAL
    return LOST_ON_SEAL if lost else NOT_RECEIVED
