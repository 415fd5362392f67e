"""The bundle's list of pictures (``snapshots.jsonl``): each picture an exported event names, whether the court
holds it, and if not, why — as far as the signed events say (``docs/evidence.md``, "Snapshots").

A picture the court does not hold is one of three: the seal signed (a ``snapshot_taken``'s ``not_stored``) that it
could not store it — the seal whose event names the picture, in the follow-up of that very event (its
``trigger_seq``), never another seal's word —, so it never existed to be sent (``not_stored_by_seal``); the court
never received it, and no event of the bundle says why (``not_received``: lost on the way, thinned on the seal, or
withheld); the court received bytes that hash to its name and refused them (``refused_by_court``: kept in the
quarantine, :mod:`server.export.refused`); or the court received it and no longer holds it (``lost``).

Two seals of a case may name the same bytes (two covered lenses: one black frame), and the court keeps one row per
seal that delivered them: a line takes the row of a seal whose exported event names the picture, the first by
device id, and only when none of those delivered it another seal's of the case (again the first by device id).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from seal_protocol.wirejson import loads_wire_json
from server.evidence.models import Snapshot
from server.evidence.queries import named_pictures
from server.export.refused import refused_pictures

JsonDict = dict[str, Any]

#: Why a picture an event names is not in the bundle (``absent_reason``).
NOT_STORED_BY_SEAL = "not_stored_by_seal"
NOT_RECEIVED = "not_received"
LOST = "lost"
REFUSED_BY_COURT = "refused_by_court"


class SignedLine(Protocol):
    """An exported event line: the stored bytes and the seal's id and seq."""

    raw: bytes
    device_id: str
    seq: int


def named_snapshots(raw: bytes) -> list[str]:
    """The SHA-256s of the pictures the signed event ``raw`` names (``snapshots`` list, or ``snapshot``)."""
    payload = _payload(raw)
    return named_pictures(payload) if payload is not None else []


def not_stored(raw: bytes) -> tuple[int | None, list[tuple[str, str | None]]]:
    """The pictures a signed ``snapshot_taken`` ``raw`` says the seal could not store, as (sha256, reason); the
    reason ``None`` if the seal signed none that is text; with its ``trigger_seq`` (``None`` if not an integer). Any
    other event says none."""
    envelope = loads_wire_json(raw, what="event")
    payload = envelope.get("payload")
    if envelope.get("type") != "snapshot_taken" or not isinstance(payload, dict):
        return None, []
    listed = payload.get("not_stored")
    items = [item for item in listed if isinstance(item, dict)] if isinstance(listed, list) else []
    trigger_seq = payload.get("trigger_seq")
    return trigger_seq if type(trigger_seq) is int else None, [
        (item["sha256"], item["reason"] if isinstance(item.get("reason"), str) else None)
        for item in items
        if isinstance(item.get("sha256"), str)
    ]


def snapshot_records(
    session: Session, case_no: str, events: Iterable[SignedLine]
) -> tuple[list[JsonDict], dict[str, bytes]]:
    """One ``snapshots.jsonl`` line per picture the exported ``events`` name, sorted by SHA-256; and the bytes the
    court refused of those that are the picture (``refused/<sha256>.jpg``), by SHA-256.

    A ``snapshot_taken``'s ``not_stored`` counts for a picture only when its ``trigger_seq`` is an exported event of
    the same seal that names the picture: a seal speaks for the pictures of its own triggers, not another seal's."""
    events = list(events)
    named: dict[str, set[str]] = {}  # sha256 -> the seals whose exported events name it
    naming: dict[tuple[str, int], set[str]] = {}  # (seal, seq) -> the pictures that signed event names
    for line in events:
        names = named_snapshots(line.raw)
        naming[(line.device_id, line.seq)] = set(names)
        for sha in names:
            named.setdefault(sha, set()).add(line.device_id)
    said: dict[str, list[JsonDict]] = {}  # sha256 -> the seal's signed statements that it could not store it
    for line in events:
        trigger_seq, listed = not_stored(line.raw)
        trigger = naming.get((line.device_id, trigger_seq), set()) if trigger_seq is not None else set()
        for sha, reason in listed:
            if sha in trigger:
                said.setdefault(sha, []).append({"device_id": line.device_id, "reason": reason, "seq": line.seq})
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
        statements = sorted(said.get(sha, []), key=lambda s: (s["device_id"], s["seq"]))
        records.append(
            {
                "absent_reason": _absent_reason(row, statements, refused.is_picture(sha)),
                "device_id": row.device_id if row else min(named[sha]),
                "not_stored": statements,
                "present": row is not None,
                "received_at": utc_now_ms(row.received_at) if row else None,
                "refused": refused.entries.get(sha, []),
                "sha256": sha,
                "size": row.size if row else None,
            }
        )
    return records, {sha: data for sha, data in refused.pictures.items() if sha not in held}


def _preference(row: Snapshot, naming: set[str]) -> tuple[bool, str]:
    """The order rows of one picture are chosen in: a seal whose exported event names it first, then by device id."""
    return row.device_id not in naming, row.device_id


def _absent_reason(row: Snapshot | None, statements: list[JsonDict], refused: bool) -> str | None:
    """``None`` when the court holds the picture (another trigger's identical frame may have brought the bytes a
    seal said it could not store once); else why not: bytes that are the picture in the quarantine say the court
    received and refused it, whatever the seal said."""
    if row is not None:
        return None
    if refused:
        return REFUSED_BY_COURT
    return NOT_STORED_BY_SEAL if statements else NOT_RECEIVED


def _payload(raw: bytes) -> dict[str, Any] | None:
    payload = loads_wire_json(raw, what="event").get("payload", {})
    return payload if isinstance(payload, dict) else None
