"""The events of a bundle, read from the database as they are written: never all of a case's events in memory at
once (a case may hold a million). An :class:`EventSource` is the query; each pass over it (``events.jsonl``,
``events-meta.jsonl``, the pictures they name, the report's facts) streams the rows again, :data:`PAGE` at a time,
in the order of their leaves in the Merkle log. What an export needs of all of them at once — how many, when the
first and last were received, their leaves — is read by aggregate queries or kept compactly (8 bytes a leaf).

The rows a pass reads are those of the checkpoint chosen before (leaves below its size): the ingest stores each
event with its leaf in one transaction, so every pass reads the same events, even on PostgreSQL while seals send.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from server.core.db import READ_ONLY, make_session_factory
from server.evidence.models import Event, LogLeaf
from server.export.errors import ExportFailed

#: Rows fetched from the database at a time while a pass streams the events.
PAGE = 256


@dataclass
class EventLine:
    raw: bytes
    device_id: str
    seq: int
    event_id: str
    received_at: datetime
    leaf_index: int

    def meta(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "event_id": self.event_id,
            "leaf_index": self.leaf_index,
            "received_at": utc_now_ms(self.received_at),
            "seq": self.seq,
        }


@contextmanager
def reading(session: Session) -> Iterator[Session]:
    """A session of its own on ``session``'s database that only reads, ended with the block: on SQLite it begins
    DEFERRED, so a pass over a large case never holds the write lock (the ingest's) while the bundle is written."""
    with make_session_factory(session.get_bind())() as reader:  # type: ignore[arg-type]
        reader.connection(execution_options=READ_ONLY)
        yield reader


class EventSource:
    """The events of ``case_no`` whose ``ts`` lies in ``[start, end]`` (``None``: open), with each seal's events
    between its first and last seq in the range (a seal whose clock stepped back has events inside its chain whose
    ``ts`` is outside), of leaves below ``below``. Iterating streams them (:class:`EventLine`) by leaf index;
    ``len()`` is their count. :class:`ExportFailed` at once if one of them has no leaf (the log's tables are
    damaged)."""

    def __init__(
        self, session: Session, case_no: str, start: datetime | None, end: datetime | None, below: int
    ) -> None:
        self._session = session
        logged = or_(LogLeaf.leaf_index.is_(None), LogLeaf.leaf_index < below)
        where: list[Any] = [Event.case_no == case_no, logged]
        within = [Event.ts >= start] if start is not None else []
        within += [Event.ts <= end] if end is not None else []
        if within:
            spans = select(Event.device_id, func.min(Event.seq), func.max(Event.seq)).outerjoin(
                LogLeaf, LogLeaf.event_id == Event.id
            )
            spans = spans.where(*where, *within).group_by(Event.device_id)
            chains = [and_(Event.device_id == d, Event.seq.between(lo, hi)) for d, lo, hi in session.execute(spans)]
            where.append(or_(*chains) if chains else false())
        self._where = where
        count, first, last = session.execute(
            self._select(func.count(), func.min(Event.received_at), func.max(Event.received_at))
        ).one()
        self._count: int = count
        #: When the court received the first and the last of them (``None`` without events).
        self.first_received: datetime | None = first
        self.last_received: datetime | None = last
        unlogged = session.execute(
            self._select(Event.device_id, Event.seq).where(LogLeaf.leaf_index.is_(None)).limit(5)
        )
        found = [f"{device_id}#{seq}" for device_id, seq in unlogged]
        if found:
            raise ExportFailed(f"events not in the Merkle log (the log's tables are damaged): {found}")

    def _select(self, *columns: Any) -> Select[Any]:
        return select(*columns).select_from(Event).outerjoin(LogLeaf, LogLeaf.event_id == Event.id).where(*self._where)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[EventLine]:
        return self.lines()

    def _stream(self, query: Select[Any]) -> Iterator[Any]:
        """The rows of ``query``, :data:`PAGE` at a time, read in a session of their own (:func:`reading`)."""
        with reading(self._session) as reader:
            yield from reader.execute(query.execution_options(yield_per=PAGE))

    def lines(self, *, types: tuple[str, ...] = ()) -> Iterator[EventLine]:
        """The events (only those of ``types``, if given), streamed by leaf index."""
        query = self._select(
            Event.raw, Event.device_id, Event.seq, Event.event_id, Event.received_at, LogLeaf.leaf_index
        )
        if types:
            query = query.where(Event.type.in_(types))
        for row in self._stream(query.order_by(LogLeaf.leaf_index)):
            yield EventLine(*row)

    def device_ids(self) -> set[str]:
        return set(self._session.scalars(self._select(Event.device_id).distinct()))

    def leaf_indices(self) -> array[int]:
        """Their leaves, by leaf index (8 bytes each)."""
        query = self._select(LogLeaf.leaf_index).order_by(LogLeaf.leaf_index).execution_options(yield_per=PAGE * 10)
        return array("q", self._session.scalars(query))

    def receipts(self) -> Iterator[tuple[str, datetime]]:
        """(device id, received at) of each, by seal and then time of receipt: the silences between them."""
        query = self._select(Event.device_id, Event.received_at).order_by(Event.device_id, Event.received_at)
        return ((device_id, received_at) for device_id, received_at in self._stream(query))
