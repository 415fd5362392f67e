"""Each seal's hash chain: ``prev_hash`` links, and the gaps left by events that have not arrived (yet).

Rules, for an event of seq ``s`` that is new (not a redelivery, not a replay):

- ``s == 1`` must have ``prev_hash`` null; any other ``s`` must have one.
- If event ``s - 1`` is stored, ``prev_hash`` must equal ``envelope_hash`` of its raw bytes.
- If event ``s + 1`` is stored (``s`` fills a gap), its ``prev_hash`` must equal the hash of this event's bytes.
- A broken link is quarantined as ``broken_chain``; the event never reaches the case log.
- An event above ``max_seq + 1`` is stored (it is signed and verified) and leaves the seqs in between *missing*;
  filling them shrinks the missing ranges. The ingest turns a change of the ranges into a ``missing_events`` alarm.

The state of a chain (``chain_state``: ``max_seq`` and the missing ranges) is loaded locked for update, once per
transaction, and created from the stored events for a seal that has none yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, envelope_hash
from server.core.base import utc_now
from server.evidence.models import Event
from server.ingest.models import ChainState
from server.ingest.results import Reason, Rejected

Range = tuple[int, int]


def ranges_of(seqs: Iterable[int], *, upto: int) -> list[Range]:
    """The ranges of seqs in ``1..upto`` not in ``seqs``."""
    missing: list[Range] = []
    expected = 1
    for seq in sorted(seqs):
        if seq > expected:
            missing.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    if upto >= expected:
        missing.append((expected, upto))
    return missing


def without(missing: list[Range], seq: int) -> list[Range]:
    """``missing`` with ``seq`` taken out (a range may split in two)."""
    result: list[Range] = []
    for first, last in missing:
        if not first <= seq <= last:
            result.append((first, last))
            continue
        if first < seq:
            result.append((first, seq - 1))
        if seq < last:
            result.append((seq + 1, last))
    return result


def count_missing(missing: Iterable[Range]) -> int:
    return sum(last - first + 1 for first, last in missing)


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


class ChainBook:
    """The chains of the seals of one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._states: dict[str, ChainState] = {}
        self._before: dict[str, list[Range]] = {}
        self._links: dict[tuple[str, int], Link] = {}

    def load(self, device_ids: set[str]) -> None:
        """Lock (or create) the chain states of ``device_ids``."""
        if not device_ids:
            return
        query = (
            select(ChainState)
            .where(ChainState.device_id.in_(device_ids))
            .order_by(ChainState.device_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for state in self.session.scalars(query):
            self._states[state.device_id] = state
        new = device_ids - self._states.keys()
        if new:
            self._create(new)
        for device_id in device_ids:
            self._before[device_id] = _ranges(self._states[device_id].missing)

    def _create(self, device_ids: set[str]) -> None:
        """Chain states of seals seen for the first time (or stored before chain states existed)."""
        seqs: dict[str, list[int]] = {device_id: [] for device_id in device_ids}
        rows = self.session.execute(select(Event.device_id, Event.seq).where(Event.device_id.in_(device_ids)))
        for device_id, seq in rows:
            seqs[device_id].append(seq)
        for device_id, stored in seqs.items():
            top = max(stored, default=0)
            missing = [list(r) for r in ranges_of(stored, upto=top)]
            state = ChainState(device_id=device_id, max_seq=top, missing=missing, updated_at=utc_now())
            self.session.add(state)
            self._states[device_id] = state

    def neighbours(self, envelopes: Iterable[Envelope]) -> dict[str, set[int]]:
        """Seqs next to the envelopes' that may be stored: their links must be checked."""
        wanted: dict[str, set[int]] = {}
        for envelope in envelopes:
            top = self._states[envelope.device_id].max_seq
            near = {s for s in (envelope.seq - 1, envelope.seq + 1) if 1 <= s <= top}
            wanted.setdefault(envelope.device_id, set()).update(near)
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
                state.missing = [*state.missing, [state.max_seq + 1, seq - 1]]
            state.max_seq = seq
        else:
            state.missing = [list(r) for r in without(_ranges(state.missing), seq)]
        state.updated_at = utc_now()
        self.remember(envelope.device_id, seq, raw, envelope.prev_hash)

    def changes(self) -> Iterator[ChainChange]:
        """Seals whose missing ranges changed in this transaction."""
        for device_id, before in self._before.items():
            state = self._states[device_id]
            after = _ranges(state.missing)
            if after != before:
                yield ChainChange(device_id, before, after, state.max_seq)


def _ranges(stored: list[list[int]]) -> list[Range]:
    return [(int(first), int(last)) for first, last in stored]
