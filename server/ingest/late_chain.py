"""A late event placed by the hash chain, and the pictures of the events refused for their case.

A seal's event belongs to the case the seal is bound to now, or to an ended binding of the case it names if its
``ts`` falls within that binding (±5 min: :func:`~server.ingest.checks.binding_covers`). A Raspberry Pi has no
real-time clock: one that booted days behind and had not heard from NTP yet stamps its events days early, and if such
an event reaches the court only after the seal was moved, its time falls in no binding of its case. The chain places
it (:class:`ChainPlacement`): the stored event just above it (``seq + 1``), of the case the envelope names, names its
exact bytes as ``prev_hash``. That fixes the event to the byte: it is the seal's own event of that place in that
case's chain, signed before the move — nothing the seal (or whoever holds its key) signs after the move gets into the
old case that way. Its predecessor, if stored, must link to it too (the chain check, ``broken_chain``). An event with
no stored successor (the last before the move, or anything signed after it) is judged by its time alone.

A picture's topic names no case: a picture no stored event names is filed under the seal's current case. One that
only events refused for their case name (this batch's, or the seal's last :data:`REFUSED_LOOKBACK` in the
quarantine) is not (:func:`refused_names`): it is quarantined as ``wrong_case``, unreceipted, and the seal keeps it
with its event; once that event is stored (in its own case), the picture is filed there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import Select, bindparam, func, select, tuple_
from sqlalchemy.orm import Session

from seal_protocol import Envelope, envelope_hash, event_topic
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.ingest.results import IngestResult, Reason, Rejected
from server.ingest.snapshot_filing import pictures_to_file
from server.seals.case_numbers import case_no_spellings
from server.seals.models import SealBinding

#: The refusals a seal's binding decides (the court's records, not the bytes): the seal keeps such an event.
CASE_REASONS = frozenset({Reason.WRONG_CASE, Reason.UNBOUND_SEAL})
#: How many of a seal's latest events refused for their case (in the quarantine) hold back the pictures they name.
REFUSED_LOOKBACK = 32
#: Stored events at some (device_id, seq) pairs, with their case (rare: expanding is fine).
_SUCCESSORS = select(Event.device_id, Event.seq, Event.case_no, Event.prev_hash).where(
    tuple_(Event.device_id, Event.seq).in_(bindparam("pairs", expanding=True))
)


class ChainPlacement:
    """The stored events just above a batch's events refused by the time rule, read once (:meth:`load`), and those
    the batch stores (:meth:`stored`)."""

    def __init__(self) -> None:
        self._above: dict[tuple[str, int], tuple[str, str | None]] = {}  # (device_id, seq) -> (case_no, prev_hash)

    def load(self, session: Session, refused: Iterable[Envelope]) -> None:
        pairs = sorted({(envelope.device_id, envelope.seq + 1) for envelope in refused})
        if pairs:
            for device_id, seq, case_no, prev_hash in session.execute(_SUCCESSORS, {"pairs": pairs}):
                self._above[(device_id, seq)] = (case_no, prev_hash)

    def stored(self, envelope: Envelope, case_no: str) -> None:
        self._above[(envelope.device_id, envelope.seq)] = (case_no, envelope.prev_hash)

    def case_of(self, envelope: Envelope, raw: bytes, bindings: Sequence[SealBinding]) -> str | None:
        """The case whose stored chain names ``raw`` (the envelope's bytes) as the ``prev_hash`` of the event above
        it, if it is the case the envelope names and one the seal was bound to; else None."""
        above = self._above.get((envelope.device_id, envelope.seq + 1))
        if above is None:
            return None
        case_no, prev_hash = above
        if case_no not in case_no_spellings(envelope.case_no) or prev_hash != envelope_hash(raw):
            return None
        return case_no if any(binding.case_no == case_no for binding in bindings) else None


def refused_names(session: Session, seals: set[str], refused: Iterable[Envelope]) -> set[tuple[str, str]]:
    """(device_id, sha256) of the pictures of ``seals`` that events refused for their case name: ``refused`` (the
    batch's) and each seal's last :data:`REFUSED_LOOKBACK` in the quarantine."""
    if not seals:
        return set()
    names = {(e.device_id, sha) for e in refused if e.device_id in seals for sha in pictures_to_file(e.payload)}
    for device_id, raw in session.execute(_refused_events(sorted(seals))):
        names.update((device_id, sha) for sha in _pictures_of(raw))
    return names


def held_back(result: IngestResult) -> Rejected:
    """The refusal of a picture :func:`refused_names` holds back (``result``: its outcome as a snapshot)."""
    return Rejected(
        Reason.WRONG_CASE,
        f"snapshot {result.detail} is named only by an event refused for its case: the seal keeps it until that "
        "event is stored (then it is filed in the event's case)",
    )


def _refused_events(device_ids: list[str]) -> Select[str, bytes]:
    """The bytes of each seal's last :data:`REFUSED_LOOKBACK` events refused for their case (quarantine rows)."""
    q = QuarantinedMessage
    newest_first = func.row_number().over(partition_by=q.device_id, order_by=q.id.desc()).label("n")
    ranked = (
        select(q.device_id, q.raw, newest_first)
        .where(
            q.device_id.in_(device_ids),
            q.topic.in_([event_topic(d) for d in device_ids]),
            q.reason.in_(sorted(r.value for r in CASE_REASONS)),
        )
        .subquery()
    )
    return select(ranked.c.device_id, ranked.c.raw).where(ranked.c.n <= REFUSED_LOOKBACK)


def _pictures_of(raw: bytes) -> list[str]:
    """The pictures a quarantined event's bytes name (none if they are no JSON object with an object payload)."""
    try:
        payload = json.loads(raw).get("payload")
    except (ValueError, AttributeError):
        return []
    return pictures_to_file(payload) if isinstance(payload, dict) else []
