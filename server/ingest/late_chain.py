"""A late event placed by the hash chain, and the pictures held back: those of the events refused for their case,
and those of a seal lately moved from another case.

A seal's event belongs to the case the seal is bound to now, or to an ended binding of the case it names if its
``ts`` falls within that binding (±5 min: :func:`~server.ingest.checks.binding_covers`). A Raspberry Pi has no
real-time clock: one that booted days behind and had not heard from NTP yet stamps its events days early, and if such
an event reaches the court only after the seal was moved, its time falls in no binding of its case. The chain places
it (:class:`ChainPlacement`): the stored event just above it (``seq + 1``) names its exact bytes as ``prev_hash``,
and is stored under the case the envelope names, or under a case the seal was moved to from it
(:func:`across_move`: the last event signed at A, its successor the first signed for B). That fixes the event to
the byte: it is the seal's own event of that place in its chain. Across a move, the seal's clock must not put it
after its binding to the named case ended: a seal moved but still configured for its old case, its clock right,
signs such events at the new premises (they stay refused: ``case_mismatch``). Its predecessor, if stored, must link
to it too (the chain check, ``broken_chain``). An event with no stored successor is judged by its time alone; the
batch (:meth:`~server.ingest.batch.IngestBatch.apply`) tries its refused events again, from the top down, once its
other events are stored, so a run drained in order is placed at once.

A picture's topic names no case: a picture no stored event names is filed under the seal's current case. One that an
event refused for its case names (this batch's, or one of the seal's last :data:`REFUSED_LOOKBACK` in the quarantine)
may be the evidence of that event's case, into which the chain may yet place the event: then it is held back
(:class:`HoldBack`) — quarantined as ``wrong_case``, unreceipted, and the seal keeps it with its event; once that
event is stored (in its own case), the picture is filed there. Only while the chain may still place the event
(:func:`may_be_placed`), and for at most :data:`HOLD_BACK_LIMIT` since the court first refused it: then the picture is
filed under the seal's current case, as any picture no stored event names (and moves to the event's case if the event
is stored after all), so that no picture stays in a seal's spool for ever.

A moved seal's picture is held back too (:func:`recently_moved`): a seal moved from case A to case B drains A's
pictures from its outbox, and one that comes before the event naming it (signed in A, delivered later) would be filed
under B meanwhile — B's parties would see A's premises. So a picture no stored event of its seal names is held back
(quarantined ``wrong_case``, unreceipted) if the binding it would be filed under (the seal's current one, or its last
if it is unbound) began less than :data:`HOLD_BACK_LIMIT` ago and the seal had another binding, earlier, to another
case; the seal sends it again, and once its naming event is stored, it is filed in that event's case. A seal bound
from stock (no other case) or bound again to its one case files it at once, as does any seal
:data:`HOLD_BACK_LIMIT` after its binding began (the seal's spool is bounded: the picture is then filed under its
case and moves to the naming event's case if that event comes after all). The bindings are read, unlocked, once the
seal's row is locked (:meth:`~server.ingest.snapshot_filing.SnapshotFiling.write`): a clerk's move, which locks the
seal's row too (the lock order of :mod:`server.ingest.rows`), commits before that read or after the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, tuple_
from sqlalchemy.orm import Session

from seal_protocol import Envelope, ParsedTopic, envelope_hash, event_topic, parse_ts
from server.core.value_lists import one_of
from server.evidence.models import Event
from server.ingest.checks import BINDING_CLOCK_SKEW
from server.ingest.models import QuarantinedMessage
from server.ingest.results import IngestResult, Message, Reason, Rejected
from server.ingest.snapshot_filing import pictures_to_file
from server.seals.case_numbers import case_no_spellings
from server.seals.models import SealBinding

#: The refusals a seal's binding decides (the court's records, not the bytes): the seal keeps such an event.
CASE_REASONS = frozenset({Reason.WRONG_CASE, Reason.UNBOUND_SEAL})
#: How many of a seal's latest events refused for their case (in the quarantine) may hold back the pictures they name.
REFUSED_LOOKBACK = 32
#: How long after an event's first refusal the pictures it names may be held back: then they are filed under the
#: seal's case (the seal's spool is bounded; a gap that never fills must not keep a picture for ever).
HOLD_BACK_LIMIT = timedelta(days=1)
#: Stored events at some (device_id, seq) pairs, with their case (rare: expanding is fine).
_SUCCESSORS = select(Event.device_id, Event.seq, Event.case_no, Event.prev_hash).where(
    tuple_(Event.device_id, Event.seq).in_(bindparam("pairs", expanding=True))
)

_Q = QuarantinedMessage
#: A seal's last refusals of one reason on its event topic, newest first (the index (device_id, reason, id)).
_LAST_REFUSED = (
    select(_Q.id, _Q.raw, _Q.received_at)
    .where(_Q.device_id == bindparam("device_id"), _Q.reason == bindparam("reason"), _Q.topic == bindparam("topic"))
    .order_by(_Q.id.desc())
    .limit(bindparam("lookback"))
)
#: When some events (by the sha256 of their bytes) were first refused for their case.
_FIRST_REFUSED = (
    select(_Q.sha256, func.min(_Q.received_at))
    .where(_Q.sha256.in_(bindparam("shas", expanding=True)), _Q.reason.in_(sorted(r.value for r in CASE_REASONS)))
    .group_by(_Q.sha256)
)
#: Some seals' bindings, each seal's newest first (the index (device_id, bound_at)).
_BINDINGS_OF = (
    select(SealBinding.device_id, SealBinding.case_no, SealBinding.bound_at)
    .where(one_of(cast(Table, SealBinding.__table__).c.device_id, "device_ids"))
    .order_by(SealBinding.device_id, SealBinding.bound_at.desc(), SealBinding.id.desc())
)
#: A seal's nearest stored event above a seq (the unique index (device_id, seq)).
_NEAREST_ABOVE = (
    select(Event.seq, Event.case_no, Event.prev_hash)
    .where(Event.device_id == bindparam("device_id"), Event.seq > bindparam("seq"))
    .order_by(Event.seq)
    .limit(1)
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
        """The case the envelope names, if the stored event above it names ``raw`` (the envelope's bytes) as its
        ``prev_hash`` and is stored under that case (one the seal was bound to), or under a case the seal was moved
        to from it (:func:`across_move`); else None."""
        above = self._above.get((envelope.device_id, envelope.seq + 1))
        if above is None:
            return None
        case_no, prev_hash = above
        if prev_hash != envelope_hash(raw):
            return None
        if case_no not in case_no_spellings(envelope.case_no):
            return across_move(envelope.case_no, envelope.occurred_at, case_no, bindings)
        return case_no if any(binding.case_no == case_no for binding in bindings) else None


def across_move(case_no: str, ts: datetime, above: str, bindings: Sequence[SealBinding]) -> str | None:
    """The case ``case_no`` names (as the court stores it), if an event of it stamped ``ts`` may be carried into it
    by the chain across a move: a binding of the seal to that case ended, the seal's clock does not put the event
    after that end (a seal moved but still configured for its old case, its clock right, signs events stamped after
    it: those stay refused, :mod:`.case_mismatch`), and a binding to ``above`` — the case of the stored event above
    it — began when or after it ended (the chain's order is the bindings' order). Else None."""
    spellings = case_no_spellings(case_no)
    starts = [binding.bound_at for binding in bindings if binding.case_no == above]
    for binding in bindings:
        end = binding.unbound_at
        if binding.case_no not in spellings or end is None or ts >= end + BINDING_CLOCK_SKEW:
            continue
        if any(start >= end - BINDING_CLOCK_SKEW for start in starts):
            return binding.case_no
    return None


def refused_for_case(
    checked: Sequence[Envelope | ParsedTopic | Rejected], refusals: Mapping[int, Rejected | IngestResult]
) -> list[Envelope]:
    """The events refused for their case (``unbound_seal``, ``wrong_case``): ``refusals`` by place."""
    return [
        e for place, r in refusals.items() if r.reason in CASE_REASONS and isinstance(e := checked[place], Envelope)
    ]


def refused_events(
    checked: Sequence[Envelope | ParsedTopic | Rejected], messages: Sequence[Message], results: Sequence[IngestResult]
) -> list[tuple[Envelope, bytes]]:
    """A batch's events refused for their case, and their bytes (``checked``: each message as phase 1 left it)."""
    return [
        (c, messages[place].payload)
        for place, c in enumerate(checked)
        if isinstance(c, Envelope) and results[place].reason in CASE_REASONS
    ]


class HoldBack:
    """Which pictures no stored event names are held back (:meth:`pictures`): those of a seal moved less than
    :data:`HOLD_BACK_LIMIT` ago (:func:`recently_moved`), and those an event refused for its case names —
    ``refused``, the batch's (envelope and bytes), or one of each seal's last :data:`REFUSED_LOOKBACK` in the
    quarantine — while the chain may yet place that event in its case (:func:`may_be_placed`), and for at most
    :data:`HOLD_BACK_LIMIT` since the court first refused it. Nothing is read for a batch whose pictures are all named
    by stored events of their seals (the usual order: the event first)."""

    def __init__(self, refused: Sequence[tuple[Envelope, bytes]], *, now: datetime) -> None:
        self._refused = refused
        self._now = now
        self._moved: set[tuple[str, str]] = set()  # the pictures held back because their seal was moved

    def pictures(self, session: Session, unnamed: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of ``unnamed`` ((device_id, sha256) of the batch's pictures no stored event of their seal names), those
        held back."""
        if not unnamed:
            return set()
        moved = recently_moved(session, {device_id for device_id, _ in unnamed}, now=self._now)
        self._moved = {picture for picture in unnamed if picture[0] in moved}
        unnamed = unnamed - self._moved
        if not unnamed:
            return set(self._moved)
        naming: dict[str, _Refused] = {}  # sha256 of an event's bytes -> that refused event, if it names one
        for envelope, raw in self._refused:
            _add(naming, unnamed, envelope.device_id, raw, None)
        for device_id in sorted({device_id for device_id, _ in unnamed}):
            for raw, received_at in last_refused(session, device_id):
                _add(naming, unnamed, device_id, raw, received_at)
        if not naming:
            return set(self._moved)
        _first_refusals(session, naming)
        held = set(self._moved)
        for refused in naming.values():
            first = refused.first_refused or self._now
            if self._now - first < HOLD_BACK_LIMIT and may_be_placed(session, refused):
                held.update(refused.names)
        return held

    def refusal(self, result: IngestResult) -> Rejected:
        """The refusal of a picture :meth:`pictures` held back (``result``: its outcome as a snapshot)."""
        if (result.device_id, result.detail) in self._moved:
            return Rejected(
                Reason.WRONG_CASE,
                f"snapshot {result.detail} is named by no stored event of its seal, which was moved from another "
                "case less than a day ago: it may be that case's evidence, so the seal keeps it until its naming "
                "event is stored (then it is filed in the event's case), or until a day after the seal was bound "
                "(then it is filed under the seal's case)",
            )
        return Rejected(
            Reason.WRONG_CASE,
            f"snapshot {result.detail} is named only by an event refused for its case that the chain may yet place "
            "there: the seal keeps it until that event is stored (then it is filed in the event's case), or until "
            "the chain can no longer place it, or for at most a day (then it is filed under the seal's case)",
        )


@dataclass
class _Refused:
    device_id: str
    seq: int
    case_no: str
    ts: datetime  # the seal's clock when it signed it
    digest: str  # the SHA-256 of its bytes: what its successor names as prev_hash, and its quarantine row's sha256
    names: set[tuple[str, str]] = field(default_factory=set)  # the batch's unnamed pictures it names: (device, sha256)
    first_refused: datetime | None = None  # its quarantine row's first copy (None: not in the quarantine yet)


def _add(
    naming: dict[str, _Refused],
    unnamed: set[tuple[str, str]],
    device_id: str,
    raw: bytes,
    received_at: datetime | None,
) -> None:
    """``raw``, an event of ``device_id`` refused for its case, if it names one of the ``unnamed`` pictures."""
    event = _fields(raw)
    if event is None:
        return
    seq, case_no, ts, payload = event
    names = {(device_id, sha) for sha in pictures_to_file(payload)} & unnamed
    if not names:
        return
    digest = envelope_hash(raw)
    known = naming.get(digest)
    if known is None:
        naming[digest] = _Refused(device_id, seq, case_no, ts, digest, names, received_at)
    elif received_at is not None:
        known.first_refused = received_at if known.first_refused is None else min(known.first_refused, received_at)


def chain_may_place(session: Session, envelope: Envelope, raw: bytes) -> bool:
    """:func:`may_be_placed` for an event refused for its case (``raw``: its bytes)."""
    refused = _Refused(envelope.device_id, envelope.seq, envelope.case_no, envelope.occurred_at, envelope_hash(raw))
    return may_be_placed(session, refused)


def may_be_placed(session: Session, refused: _Refused) -> bool:
    """Whether the chain may yet place ``refused`` in the case it names (:class:`ChainPlacement`). It depends on the
    seal's nearest stored event above it (this batch's included: they are inserted before the pictures are filed):

    * none: its successor may still come (a seal drains its outbox in order) — maybe;
    * at ``seq + 1`` naming other bytes — never: it is judged by its time alone, for ever;
    * in the case it names, at ``seq + 1`` naming its bytes — yes, when the seal sends it again; higher up — maybe,
      the gap between fills from the top, each event placed by the one above it;
    * in another case: as in that case, if a move from the case it names to that one may carry it
      (:func:`across_move`, by its own time: the events between, if any, are later); else never.
    """
    above = session.execute(_NEAREST_ABOVE, {"device_id": refused.device_id, "seq": refused.seq}).first()
    if above is None:
        return True
    seq, case_no, prev_hash = above
    if seq == refused.seq + 1 and prev_hash != refused.digest:
        return False
    if case_no in case_no_spellings(refused.case_no):
        return True
    bindings = list(session.scalars(select(SealBinding).where(SealBinding.device_id == refused.device_id)))
    return across_move(refused.case_no, refused.ts, case_no, bindings) is not None


def recently_moved(session: Session, device_ids: set[str], *, now: datetime) -> set[str]:
    """Of ``device_ids``, the seals whose pictures no stored event names are held back: the binding such a picture
    would be filed under — the seal's newest, its current one if it is bound (its last if it is unbound: draining its
    outbox) — began less than :data:`HOLD_BACK_LIMIT` before ``now``, and an earlier binding of the seal was to
    another case (whenever it ended: a seal in stock for months may still hold that case's pictures). A seal bound
    from stock, or bound again to the case it was bound to before, has no other case's pictures to show."""
    moved: set[str] = set()
    newest: dict[str, tuple[str, datetime]] = {}  # device_id -> its newest binding's case and start
    for device_id, case_no, bound_at in session.execute(_BINDINGS_OF, {"device_ids": sorted(device_ids)}):
        if device_id not in newest:
            newest[device_id] = (case_no, bound_at)
        elif case_no != newest[device_id][0] and now - newest[device_id][1] < HOLD_BACK_LIMIT:
            moved.add(device_id)
    return moved


def last_refused(session: Session, device_id: str, lookback: int = REFUSED_LOOKBACK) -> list[tuple[bytes, datetime]]:
    """The bytes and first refusal of the seal's last ``lookback`` events refused for their case: at most that many
    rows of each reason, read newest first from the index (device_id, reason, id)."""
    rows: list[tuple[int, bytes, datetime]] = []
    for reason in sorted(r.value for r in CASE_REASONS):
        params = {"device_id": device_id, "reason": reason, "topic": event_topic(device_id), "lookback": lookback}
        rows += ((id_, raw, received_at) for id_, raw, received_at in session.execute(_LAST_REFUSED, params))
    rows.sort(reverse=True)
    return [(raw, received_at) for _, raw, received_at in rows[:lookback]]


def _first_refusals(session: Session, naming: dict[str, _Refused]) -> None:
    """Set the first refusal of the batch's refused events that the seal's last ones in the quarantine did not
    include (resent long after their first refusal, newer refusals since): from their quarantine rows, by sha256."""
    missing = sorted(digest for digest, refused in naming.items() if refused.first_refused is None)
    if missing:
        for digest, first in session.execute(_FIRST_REFUSED, {"shas": missing}):
            if digest is not None:  # (it is: the rows were found by it)
                naming[digest].first_refused = first


def _fields(raw: bytes) -> tuple[int, str, datetime, dict[str, Any]] | None:
    """seq, case_no, ts and payload of a refused event's bytes (signed and verified before it was refused for its case;
    None if they are not such an event)."""
    try:
        envelope = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(envelope, dict):
        return None
    seq, case_no, ts, payload = (envelope.get(key) for key in ("seq", "case_no", "ts", "payload"))
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(case_no, str) or not isinstance(ts, str):
        return None
    try:
        occurred_at = parse_ts(ts)
    except ValueError:
        return None
    return (seq, case_no, occurred_at, payload) if isinstance(payload, dict) else None
