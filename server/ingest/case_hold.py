"""A moved seal's events that the chain may yet carry into their old case, held back from ``case_mismatch``.

A seal moved from case A to case B whose clock was behind at A signs A's events with times before A's binding even
began; the chain carries them into A once the first event the seal signed for B — whose ``prev_hash`` names the last
of them — is stored (:func:`~server.ingest.late_chain.across_move`). A batch holding the whole drain places them at
once. A drain cut between batches (the broker's flow: ``batch_size``, the linger) brings A's run first: refused as
``wrong_case`` (no successor stored yet), unreceipted, and sent again by the seal once B's first event is stored. Such
a refusal would raise ``case_mismatch`` in B naming A's intrusions (:mod:`.case_mismatch`), and the gap B's first event
leaves below it ``missing_events`` — B's judge told of A's premises. So a ``wrong_case`` refusal above the seal's
stored events (the seal's new word) is *held back* (:func:`hold_until`) when the chain may still carry it across the
move: the case it names had a binding that ended, the seal's current binding began at or after that end (±5 min), its
``ts`` is before that end + 5 min, and the current binding began less than
:data:`~server.ingest.late_chain.HOLD_BACK_LIMIT` ago (as a moved seal's pictures are held: a drain follows the move).
The event is still quarantined ``wrong_case``, unreceipted, until it is placed; nothing else changes for it.

The seal's chain state records the hold (``chain_state.case_held_until``: when the next held refusal falls due).
Each held refusal waits on its own: :data:`NO_SUCCESSOR_HOLD` (minutes) after its first refusal while no event of the
seal above it is stored, the binding's start + the limit once one is. It is settled (:func:`settle_hold`) from the
seal's last :data:`HELD_LOOKBACK` refusals in the quarantine and the batch's own:

- in a batch that stored an event of the seal: those placed since are done; if none is left, the hold ends, nothing
  raised. If a stored successor can no longer place one of them (:func:`~server.ingest.late_chain.may_be_placed`:
  at ``seq`` + 1 naming other bytes, or in a case no move carries it to), every one still refused raises
  ``case_mismatch`` now, in ``seq`` order, and the hold ends. Else they stay held, and the seal's gaps made only of
  them raise ``missing_events`` ``gap_wait_s`` after the hold's end at the earliest (:meth:`ChainBook.postpone`);
- when one falls due, in the round of due gaps (:func:`~server.ingest.gap_wait.raise_due_gaps`: the liveness
  check's, and each ingest worker's): those due and still refused raise ``case_mismatch``, the others stay held — a
  seal that never sends the successor (moved but still configured for A, its clock behind) gets its alarm
  :data:`NO_SUCCESSOR_HOLD` late at most.

A refusal once the hold has ended, or after the day, raises ``case_mismatch`` at once, as before. Nothing is read for a
batch whose seals hold nothing (the usual one): the hold rides on the chain states it reads anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, InvalidEnvelope, decode_envelope
from server.alarms.book import AlarmBook
from server.evidence.models import Event
from server.ingest.case_mismatch import on_refused
from server.ingest.chain import ChainBook
from server.ingest.late_chain import HOLD_BACK_LIMIT, across_move, chain_may_place, last_refused
from server.ingest.results import Message, Reason, Rejected
from server.seals.models import SealBinding

#: Stored events of a seal at some seqs, with their bytes (rare: a held seal's refusals).
_STORED = select(Event.seq, Event.raw).where(
    Event.device_id == bindparam("device_id"), Event.seq.in_(bindparam("seqs", expanding=True))
)
#: The seal's highest stored seq.
_TOP = select(func.max(Event.seq)).where(Event.device_id == bindparam("device_id"))
#: How long a hold lasts while no event of the seal above the held ones is stored: a seal drains its outbox in order,
#: so the rest of the drain comes within seconds. A seal moved but still configured for its old case, its clock behind
#: (one that booted at its new place on the time it shut down at the old), signs even the intrusions it sees now for
#: the old case with such times: their ``case_mismatch`` must not wait longer than this. Once an event of the seal
#: above them is stored (the seal went on, in its new case) the hold lasts until the binding's start +
#: :data:`~server.ingest.late_chain.HOLD_BACK_LIMIT`, while the seal sends them again.
NO_SUCCESSOR_HOLD = timedelta(minutes=2)
#: The most refusals of a seal for their case a hold reads back (newest first); with more, it ends at once.
HELD_LOOKBACK = 1024
_REFUSAL = Rejected(Reason.WRONG_CASE, "held back while the chain might carry it into the case it names")


def hold_until(
    envelope: Envelope, case_no: str | None, bindings: Sequence[SealBinding], *, now: datetime
) -> datetime | None:
    """When a ``wrong_case`` refusal of ``envelope``, above the seal's stored events, raises ``case_mismatch`` in
    ``case_no`` (the seal's current case) if it is still refused then; None: at once. ``bindings``: newest first."""
    if case_no is None or not bindings or bindings[0].case_no != case_no or bindings[0].unbound_at is not None:
        return None
    limit = bindings[0].bound_at + HOLD_BACK_LIMIT
    if now >= limit or across_move(envelope.case_no, envelope.occurred_at, case_no, bindings) is None:
        return None
    return min(limit, now + NO_SUCCESSOR_HOLD)


def settle_hold(
    session: Session,
    book: AlarmBook,
    chain: ChainBook,
    device_id: str,
    *,
    case_no: str | None,
    fresh: Sequence[tuple[Envelope, bytes]] = (),
    told: Collection[bytes] = (),
    now: datetime,
) -> bool:
    """Settle the seal's hold (its chain state locked, its live alarms in ``book``); True if ``case_mismatch`` was
    raised. ``fresh``: the batch's own refusals held (not in the quarantine yet); ``told``: refusals the batch raises
    ``case_mismatch`` for itself (not twice). Each held refusal waits on its own: until the binding's start + the
    limit once an event of the seal above it is stored (the seal went on in its new case), else
    :data:`NO_SUCCESSOR_HOLD` after its first refusal; those due are raised, the hold runs on to the next one due. A
    seal with more than :data:`HELD_LOOKBACK` refusals for their case in the quarantine has its hold end now, those
    it can read raised: a hold never keeps back what it cannot see whole."""
    query = select(SealBinding).where(SealBinding.device_id == device_id)
    bindings = list(session.scalars(query.order_by(SealBinding.bound_at.desc(), SealBinding.id.desc())))
    held: dict[bytes, Envelope] = {}
    refused = last_refused(session, device_id, lookback=HELD_LOOKBACK + 1)
    whole = len(refused) <= HELD_LOOKBACK
    first = {bytes(raw): at for raw, at in refused if raw}  # each refusal's first time (the batch's own: now)
    for raw in list(first) + [raw for _, raw in fresh]:
        if raw in told:
            continue
        envelope = decoded(raw)
        if envelope is not None and envelope.device_id == device_id and case_no is not None:
            if across_move(envelope.case_no, envelope.occurred_at, case_no, bindings) is not None:
                held[raw] = envelope
    stored: set[tuple[int, bytes]] = set()
    if held:
        seqs = sorted({envelope.seq for envelope in held.values()})
        stored = {(seq, bytes(raw)) for seq, raw in session.execute(_STORED, {"device_id": device_id, "seqs": seqs})}
    pending = sorted((envelope.seq, raw) for raw, envelope in held.items() if (envelope.seq, raw) not in stored)
    due = pending
    if pending and whole and bindings and bindings[0].case_no == case_no:
        if all(chain_may_place(session, held[raw], raw) for _, raw in pending):
            limit = bindings[0].bound_at + HOLD_BACK_LIMIT
            top = session.scalar(_TOP, {"device_id": device_id})
            ends = {
                raw: limit if top is not None and top > seq else min(limit, first.get(raw, now) + NO_SUCCESSOR_HOLD)
                for seq, raw in pending
            }
            due = [(seq, raw) for seq, raw in pending if ends[raw] <= now]
            waiting = [(seq, raw) for seq, raw in pending if ends[raw] > now]
            if waiting:
                chain.hold(device_id, min(ends[raw] for _, raw in waiting))  # the next one due
                chain.postpone(device_id, {seq for seq, _ in waiting}, max(ends[raw] for _, raw in waiting))
    for _, raw in due:  # refused in the end: the seal's own word, in its current case
        on_refused(book, held[raw], _REFUSAL, case_no=case_no, at=now)
    if len(due) == len(pending):
        chain.hold(device_id, None)
    return bool(due) and case_no is not None


class CaseHolds:
    """A batch's ``wrong_case`` refusals held back (:meth:`consider`, :meth:`held`), and its seals' holds settled."""

    def __init__(self, chain: ChainBook, *, now: datetime) -> None:
        self._chain = chain
        self._now = now
        self._until: dict[int, datetime] = {}  # a message's place -> its hold's end

    def consider(self, place: int, envelope: Envelope, case_no: str | None, bindings: Sequence[SealBinding]) -> None:
        """A refusal of ``envelope`` above the seal's stored events: held back if :func:`hold_until` says so."""
        until = hold_until(envelope, case_no, bindings, now=self._now)
        if until is not None:
            self._until[place] = until

    def held(self, place: int) -> bool:
        """Whether the refusal at ``place`` is held back (once :meth:`settle` ran): no ``case_mismatch`` for it now."""
        return place in self._until

    def settle(
        self,
        session: Session,
        book: AlarmBook,
        unplaced: Mapping[int, tuple[Message, Envelope]],
        rows: Sequence[Mapping[str, object]],
        case_of: Callable[[str], str | None],
    ) -> None:
        """Once the batch's events are inserted, before their alarms: of the batch's refusals held back, those it did
        not place (``unplaced``) hold their seals back — but one whose successor the batch stored (and which did not
        place it) is refused in the end, its ``case_mismatch`` raised in the messages' order; then the holds of the
        seals the batch stored events of are settled (:func:`settle_hold`)."""
        fresh: dict[str, list[tuple[Envelope, bytes]]] = {}
        told: set[bytes] = set()  # refused in the end by the batch itself (its successor stored here)
        if self._until:
            stored_here = {(row["device_id"], row["seq"]) for row in rows}
            for place in [place for place in self._until if place not in unplaced]:
                del self._until[place]
            for place, until in list(self._until.items()):
                message, envelope = unplaced[place]
                if (envelope.device_id, envelope.seq + 1) in stored_here:
                    del self._until[place]
                    told.add(message.payload)
                    continue
                running = self._chain.holds().get(envelope.device_id)  # the next look: the earliest one due
                self._chain.hold(envelope.device_id, until if running is None else min(until, running))
                fresh.setdefault(envelope.device_id, []).append((envelope, message.payload))
        holds = self._chain.holds()
        if not holds:  # the usual batch
            return
        stored = {row["device_id"] for row in rows}
        for device_id in sorted(holds.keys() & stored):
            case_no, ours, now = case_of(device_id), fresh.get(device_id, []), self._now
            settle_hold(session, book, self._chain, device_id, case_no=case_no, fresh=ours, told=told, now=now)


def raise_due_holds(
    session: Session, book: AlarmBook, chain: ChainBook, cases: Mapping[str, str | None], *, now: datetime
) -> list[str]:
    """The round's part: settle the holds of ``chain``'s seals (loaded, locked) that end at ``now`` or before; the
    seals whose ``case_mismatch`` was raised."""
    due = sorted(device_id for device_id, until in chain.holds().items() if until <= now)
    return [d for d in due if settle_hold(session, book, chain, d, case_no=cases.get(d), now=now)]


def decoded(raw: bytes) -> Envelope | None:
    """The envelope of an event's bytes, or None if they are none (a refused event's were decoded and verified before
    it was refused for its case; a message stored one by one may be anything)."""
    try:
        return decode_envelope(raw)
    except InvalidEnvelope:
        return None
