"""Each seal's hash chain: ``prev_hash`` links, and the gaps left by events that have not arrived (yet).

Rules, for an event of seq ``s`` that is new (not a redelivery, not a replay):

- ``s == 1`` must have ``prev_hash`` null; any other ``s`` must have one.
- If event ``s - 1`` is stored, ``prev_hash`` must equal ``envelope_hash`` of its raw bytes.
- If event ``s + 1`` is stored (``s`` fills a gap), its ``prev_hash`` must equal the hash of this event's bytes.
- A broken link is quarantined as ``broken_chain``; the event never reaches the case log.
- An event above ``max_seq + 1`` is stored (it is signed and verified) and leaves the seqs in between *missing*;
  filling them shrinks the missing ranges. The ingest turns a change of the ranges into a ``missing_events`` alarm.
- At most :data:`MAX_TRACKED_GAPS` ranges are kept one by one (a seal's key can open a gap with every event, and the
  ranges are read, changed and written back with each batch holding one of its events). Gaps opened while that many
  are kept are counted in one *untracked* span instead, ``(first, last, count)``: ``count`` seqs of
  ``first..last`` are missing, which ones the events table tells. A new event in that span fills one of them (it is
  not stored: a stored seq is a redelivery or a replay, decided before), so the count stays exact, and the span goes
  when its count is 0; new gaps join it while it lasts, so it stays above every range kept.

Each gap keeps the time it was recorded (the database's clock) until its ``missing_events`` alarm is raised,
``gap_wait_s`` later if no other worker stored the missing events meanwhile (:mod:`server.ingest.gap_wait`): a gap
split in two keeps its time in both halves; the untracked span keeps the time of the oldest gap in it not raised yet.

The state of a chain (``chain_state``: ``max_seq``, the missing ranges and their times) is loaded locked for update,
once per transaction;
a seal that has none yet (its first events, or events stored before chain states existed) gets one made
from its stored events. The states a transaction changed are written back in one statement. The link to the head (the
event at ``max_seq``) comes from the worker's cache when it is still the head (:mod:`server.ingest.seal_cache`), so
the usual next event needs no read of the events table.

On PostgreSQL one statement makes the missing states and locks the others, in one pass in ``device_id`` order
(:data:`_MAKE_OR_LOCK`): making a state holds its key as locking it does (another worker making or locking it waits
for this transaction), so it has to take its place in that order. Locking the states found, then making the missing
ones, made a state before one sorting after it that another worker, having made the first, could be waiting for: a
deadlock (``tests/server/test_ingest_races.py``). A state another worker made meanwhile is waited for, then locked
and read as that worker left it. SQLite has one writer at a time: the states are read, and the missing ones made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, false, insert, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from seal_protocol import Envelope, envelope_hash
from server.core.base import utc_now
from server.core.bulk_update import BulkUpdate
from server.core.db import database_now
from server.core.driver_sql import DriverSelect
from server.core.value_lists import one_of, unnest_of
from server.evidence.models import Event
from server.ingest.chain_ranges import MAX_TRACKED_GAPS, Range, Untracked, count_missing, ranges_of, without
from server.ingest.models import ChainState
from server.ingest.results import Reason, Rejected
from server.ingest.seal_cache import Head, IngestCache


@dataclass(frozen=True, slots=True)
class Link:
    """What a stored event contributes to the chain: the hash of its bytes, and the hash it names as previous."""

    hash: str
    prev_hash: str | None


@dataclass(frozen=True, slots=True)
class ChainChange:
    device_id: str
    before: list[Range]
    after: list[Range]
    max_seq: int
    untracked_before: Untracked | None = None
    untracked: Untracked | None = None  # after

    @property
    def missing_count(self) -> int:
        return count_missing(self.after) + (self.untracked[2] if self.untracked else 0)


@dataclass(slots=True)
class _State:
    max_seq: int
    missing: list[Range]
    untracked: Untracked | None = None
    changed: bool = False
    since: list[datetime | None] = field(default_factory=list)  # each range's time; None: its alarm was raised
    untracked_since: datetime | None = None
    held_until: datetime | None = None  # a moved seal's refusals held back from case_mismatch until (.case_hold)

    def add_gap(self, first: int, last: int, now: datetime) -> None:
        if self.untracked is not None:
            start, _, count = self.untracked
            self.untracked = (start, last, count + last - first + 1)
            self.untracked_since = self.untracked_since or now  # the oldest gap in it not raised yet
        elif len(self.missing) < MAX_TRACKED_GAPS:
            self.missing, self.since = [*self.missing, (first, last)], [*self.since, now]
        else:
            self.untracked, self.untracked_since = (first, last, last - first + 1), now

    def fill(self, seq: int) -> None:
        if self.untracked is not None and self.untracked[0] <= seq <= self.untracked[1]:
            first, last, count = self.untracked
            self.untracked = (first, last, count - 1) if count > 1 else None
            self.untracked_since = self.untracked_since if count > 1 else None
            return
        since: list[datetime | None] = []
        for (first, last), at in zip(self.missing, self.since, strict=True):
            since += [at] * len(without([(first, last)], seq))  # a range split in two keeps its time in both
        self.missing, self.since = without(self.missing, seq), since

    def unannounced(self) -> list[datetime]:
        """The times of the gaps whose alarm is not raised yet."""
        return [at for at in (*self.since, self.untracked_since) if at is not None]

    def announce(self, cutoff: datetime) -> bool:
        """Mark the gaps recorded at ``cutoff`` or before as raised; True if there were any."""
        if not any(at <= cutoff for at in self.unannounced()):
            return False
        self.since = [None if at is None or at <= cutoff else at for at in self.since]
        if self.untracked_since is not None and self.untracked_since <= cutoff:
            self.untracked_since = None
        self.changed = True
        return True


_CHAIN_TABLE = cast(Table, ChainState.__table__)
#: The chain states of some seals, read once :data:`_MAKE_OR_LOCK` holds them (SQLite: its one writer holds them all).
_CHAIN_ROWS = DriverSelect(
    select(
        *(_CHAIN_TABLE.c[name] for name in ("device_id", "max_seq", "missing", "missing_since", "case_held_until"))
    ).where(one_of(_CHAIN_TABLE.c.device_id, "device_ids"))
)
_WANTED = unnest_of({"device_id": _CHAIN_TABLE.c.device_id.type}, prefix="wanted_")
#: PostgreSQL: the chain states of some seals, each made empty if missing (returned: filled from the stored events in
#: this transaction) or else locked (``DO UPDATE … WHERE false`` locks the row it finds and changes nothing), one after
#: the other in ``device_id`` order. Each waits for a transaction that holds its key: one that made it and has not
#: committed, or that locked or wrote it.
_MAKE_OR_LOCK = (
    postgresql.insert(_CHAIN_TABLE)
    .from_select(
        ["device_id", "max_seq", "missing", "updated_at"],
        select(
            _WANTED.c.device_id,
            literal(0, _CHAIN_TABLE.c.max_seq.type),
            literal([], _CHAIN_TABLE.c.missing.type),
            bindparam("now", type_=_CHAIN_TABLE.c.updated_at.type),
        ).order_by(_WANTED.c.device_id),
    )
    .on_conflict_do_update(
        index_elements=[_CHAIN_TABLE.c.device_id], set_={"max_seq": _CHAIN_TABLE.c.max_seq}, where=false()
    )
    .returning(_CHAIN_TABLE.c.device_id)
)
_WRITTEN = ("max_seq", "missing", "missing_since", "unannounced_since", "case_held_until", "updated_at")
_CHAIN_UPDATE = BulkUpdate(
    _CHAIN_TABLE,
    "device_id",
    {name: _CHAIN_TABLE.c[name].type for name in ("device_id", *_WRITTEN)},
    values=lambda v: {name: v[name] for name in _WRITTEN},
)


class ChainBook:
    """The chains of the seals of one transaction. ``cache`` supplies heads known from earlier transactions."""

    def __init__(self, session: Session, cache: IngestCache | None = None) -> None:
        self.session = session
        self.cache = cache
        self._states: dict[str, _State] = {}
        self._before: dict[str, tuple[list[Range], Untracked | None]] = {}
        self._links: dict[tuple[str, int], Link] = {}
        self._now: datetime | None = None

    def now(self) -> datetime:
        """The database's time, read once per transaction when first needed (:func:`~.gap_wait.database_now`)."""
        if self._now is None:
            self._now = database_now(self.session)
        return self._now

    def load(self, device_ids: set[str]) -> None:
        """Lock the chain states of ``device_ids``, making those missing, in ``device_id`` order."""
        if not device_ids:
            return
        wanted = sorted(device_ids)
        on_postgresql = self.session.get_bind().dialect.name == "postgresql"
        made: set[str] = set()
        if on_postgresql:
            made = set(self.session.scalars(_MAKE_OR_LOCK, {"wanted_device_id": wanted, "now": utc_now()}))
        for device_id, max_seq, missing, since, held in _CHAIN_ROWS.rows(self.session, {"device_ids": wanted}):
            self._states[device_id] = _state(int(max_seq), missing, since)
            self._states[device_id].held_until = held
        if not on_postgresql:  # SQLite: this transaction is the only writer
            made = device_ids - self._states.keys()
            if made:
                now = utc_now()
                rows = [{"device_id": d, "max_seq": 0, "missing": [], "updated_at": now} for d in sorted(made)]
                self.session.execute(insert(_CHAIN_TABLE), rows)
        if made:
            self._fill(made)
        for device_id in device_ids:
            state = self._states[device_id]
            self._before[device_id] = (list(state.missing), state.untracked)

    def _fill(self, device_ids: set[str]) -> None:
        """The states just made, from the seals' stored events: none for a seal heard of for the first time, some for
        one stored before chain states existed (no other transaction stores a seal's events without its state).
        Written back with the states changed (:meth:`write`)."""
        seqs: dict[str, list[int]] = {device_id: [] for device_id in device_ids}
        now = utc_now()
        rows = self.session.execute(select(Event.device_id, Event.seq).where(Event.device_id.in_(device_ids)))
        for device_id, seq in rows:
            seqs[device_id].append(seq)
        for device_id, stored in seqs.items():
            top = max(stored, default=0)
            state = _State(top, [], changed=True)
            for first, last in ranges_of(stored, upto=top):
                state.add_gap(first, last, now)
            state.announce(now)  # gaps stored before chain states existed: not raised now
            self._states[device_id] = state

    def max_seq(self, device_id: str) -> int:
        return self._states[device_id].max_seq

    def holds(self) -> dict[str, datetime]:
        """The seals of this transaction whose refusals are held back from ``case_mismatch`` (:mod:`.case_hold`)."""
        return {d: state.held_until for d, state in self._states.items() if state.held_until is not None}

    def hold(self, device_id: str, until: datetime | None) -> None:
        """Hold the seal's refusals back from ``case_mismatch`` until ``until`` (None: no more)."""
        state = self._states[device_id]
        state.held_until, state.changed = until, True

    def postpone(self, device_id: str, seqs: set[int], until: datetime) -> None:
        """The seal's gaps not raised yet whose every seq is in ``seqs`` (events held back: :mod:`.case_hold`) raise
        ``missing_events`` ``gap_wait`` after ``until`` at the earliest."""
        state = self._states[device_id]
        for i, ((first, last), at) in enumerate(zip(state.missing, state.since, strict=True)):
            if at is not None and at < until and last - first < len(seqs) and seqs.issuperset(range(first, last + 1)):
                state.since[i], state.changed = until, True

    def unannounced(self) -> dict[str, datetime]:
        """The seals of this transaction with a gap whose alarm is not raised yet: the oldest such gap's time."""
        return {d: min(times) for d, state in sorted(self._states.items()) if (times := state.unannounced())}

    def announce(self, device_id: str, cutoff: datetime) -> ChainChange | None:
        """Mark the seal's gaps recorded at ``cutoff`` or before as raised: the chain as it stands, to raise their
        alarm with, or None if there were none."""
        state = self._states[device_id]
        if not state.announce(cutoff):
            return None
        missing, untracked = state.missing, state.untracked
        return ChainChange(device_id, missing, list(missing), state.max_seq, untracked, untracked)

    def lookups(self, envelopes: Iterable[Envelope]) -> dict[str, set[int]]:
        """Seqs of stored events the envelopes must be checked against: their own (a redelivery or a replay) and
        their neighbours'. A neighbour that is the seal's cached head needs no lookup."""
        wanted: dict[str, set[int]] = {}
        for envelope in envelopes:
            device_id, seq = envelope.device_id, envelope.seq
            top = self._states[device_id].max_seq
            if seq <= top:
                near = {s for s in (seq - 1, seq, seq + 1) if 1 <= s <= top}
            elif seq == top + 1 and top >= 1:
                head = self.cache.head(device_id, top) if self.cache is not None else None
                if head is not None:
                    self._links.setdefault((device_id, top), Link(head.hash, head.prev_hash))
                    continue
                near = {top}
            else:
                continue
            wanted.setdefault(device_id, set()).update(near)
        return wanted

    def remember(self, device_id: str, seq: int, raw: bytes, prev_hash: str | None) -> None:
        """A stored event (loaded from the database, or stored by this transaction)."""
        self._links[(device_id, seq)] = Link(envelope_hash(raw), prev_hash)

    def check(self, envelope: Envelope, raw: bytes) -> None:
        """Raise :class:`Rejected` (``broken_chain``) unless the envelope fits the links stored around it."""
        device_id, seq, prev = envelope.device_id, envelope.seq, envelope.prev_hash
        if seq == 1 and prev is not None:
            raise Rejected(Reason.BROKEN_CHAIN, f"broken chain: seq 1 must have prev_hash null, got {prev}")
        if seq > 1 and prev is None:
            raise Rejected(Reason.BROKEN_CHAIN, f"broken chain: seq {seq} has prev_hash null")
        before = self._links.get((device_id, seq - 1))
        if before is not None and before.hash != prev:
            raise Rejected(
                Reason.BROKEN_CHAIN,
                f"broken chain: seq {seq} names previous {prev}, stored seq {seq - 1} hashes to {before.hash}",
            )
        after = self._links.get((device_id, seq + 1))
        if after is not None and after.prev_hash != (own := envelope_hash(raw)):
            raise Rejected(
                Reason.BROKEN_CHAIN,
                f"broken chain: seq {seq} hashes to {own}, stored seq {seq + 1} names previous {after.prev_hash}",
            )

    def record(self, envelope: Envelope, raw: bytes) -> None:
        """The envelope (which passed :meth:`check`) is stored: advance the chain or fill a gap."""
        state = self._states[envelope.device_id]
        seq = envelope.seq
        if seq > state.max_seq:
            if seq > state.max_seq + 1:
                state.add_gap(state.max_seq + 1, seq - 1, self.now())
            state.max_seq = seq
        else:
            state.fill(seq)
        state.changed = True
        self.remember(envelope.device_id, seq, raw, envelope.prev_hash)

    def write(self) -> None:
        """Store the states this transaction changed (one statement for them all)."""
        now = utc_now()
        values = [
            {
                "device_id": d,
                "max_seq": s.max_seq,
                "missing": _lists(s.missing, s.untracked),
                "missing_since": _times(s),
                "unannounced_since": min(s.unannounced(), default=None),
                "case_held_until": s.held_until,
                "updated_at": now,
            }
            for d, s in sorted(self._states.items())
            if s.changed
        ]
        _CHAIN_UPDATE.execute(self.session, values)

    def heads(self) -> dict[str, Head]:
        """The heads this transaction knows (valid once it commits)."""
        heads = {}
        for device_id, state in self._states.items():
            link = self._links.get((device_id, state.max_seq))
            if link is not None:
                heads[device_id] = Head(state.max_seq, link.hash, link.prev_hash)
        return heads

    def changes(self) -> Iterator[ChainChange]:
        """Seals whose missing ranges changed in this transaction."""
        for device_id, (before, untracked_before) in self._before.items():
            state = self._states[device_id]
            if state.missing != before or state.untracked != untracked_before:
                yield ChainChange(
                    device_id, before, list(state.missing), state.max_seq, untracked_before, state.untracked
                )


def _lists(missing: list[Range], untracked: Untracked | None) -> list[list[int]]:
    """As ``chain_state.missing`` keeps them: ``[first, last]`` each, and the untracked span last, if any, as
    ``[first, last, count]``."""
    stored = [[first, last] for first, last in missing]
    if untracked is not None:
        stored.append(list(untracked))
    return stored


def _times(state: _State) -> list[str | None] | None:
    """As ``chain_state.missing_since`` keeps them: one per entry of :func:`_lists`, ISO 8601 (None: none)."""
    times = [*state.since, *([state.untracked_since] if state.untracked is not None else [])]
    return None if not any(times) else [None if at is None else at.isoformat() for at in times]


def _state(max_seq: int, stored: list[list[int]], times: list[str | None] | None) -> _State:
    """:func:`_lists` and :func:`_times` read back (no times, or not one per entry: every gap raised)."""
    untracked: Untracked | None = None
    if stored and len(stored[-1]) == 3:
        first, last, count = stored[-1]
        stored, untracked = stored[:-1], (int(first), int(last), int(count))
    entries = len(stored) + (untracked is not None)
    at = [None if t is None else datetime.fromisoformat(t) for t in times or []]
    if len(at) != entries:
        at = [None] * entries
    missing = [(int(first), int(last)) for first, last in stored]
    untracked_since = at[-1] if untracked is not None else None
    return _State(max_seq, missing, untracked, since=at[: len(missing)], untracked_since=untracked_since)
