"""The case a picture is filed under: the case(s) whose stored signed events from the same seal name it (the
payload's ``snapshots`` or ``snapshot``), whichever case the seal is bound to when the picture arrives — a seal
moved to another case still drains its old case's pictures from its outbox, and they are its old case's evidence.

A snapshot's topic names no case, and the event that names it may arrive before or after it:

* the event first: it writes a :class:`~server.evidence.models.SnapshotName` row (sha256, device_id, case_no), and
  the picture, when it comes, is filed under each case those rows name for its seal;
* the picture first: no row names it yet, so it is filed provisionally under the seal's current case, or the last
  it was bound to; the naming event then files it under its own case, and takes it from every case none of whose
  events from that seal name it (the provisional row moves, or goes if the named case holds its bytes already).
  Unless it is held back (below): a moved seal's picture is, for a day after the move, so that the new case never
  shows the old case's picture meanwhile.

Each seal's delivery has its own rows (unique: sha256, device_id, case_no): two covered lenses give the same black
frame, and a seal's provisional row is never the row another seal's delivery of the same bytes relies on.

Both orders are decided once the seals' rows are locked (the lock order of :mod:`server.ingest.rows`): a batch that
holds a picture, or an event that names one, locks the rows of those seals — even if it changes nothing in them —
before it reads the names and the pictures' rows (:meth:`SnapshotFiling.write`), and holds the locks until it
commits. A picture and the events that name it come from one seal, so of two workers storing them at once, one waits
for the other's commit and then reads what it wrote (READ COMMITTED: each statement sees the rows committed before
it began). On SQLite a transaction holds the one write lock from its start.

The receipts do not change: a picture is receipted once a row of its bytes is stored, under whichever case. Some
pictures no stored event names are held back for a bounded time (:class:`~server.ingest.late_chain.HoldBack`): not
filed provisionally, they are quarantined unreceipted meanwhile, and the seal sends them again — a picture that an
event refused for its case names, which the chain may yet place in that case, and any picture of a seal moved from
another case less than a day ago (:func:`~server.ingest.late_chain.recently_moved`: it may be that case's). The hold
back is asked only about pictures no stored event names: a batch whose pictures are all named (the event first) reads
nothing more for it. So is each seal's budget of such pictures (:mod:`~server.ingest.unnamed_budget`, :meth:`budget`):
past it, a picture no stored event of its seal names is not filed either, but refused (``unnamed_snapshots``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from server.core.bulk_insert import BulkInsert
from server.core.value_lists import one_of
from server.evidence.models import Snapshot, SnapshotName
from server.evidence.queries import named_pictures
from server.ingest.results import IngestResult, Outcome
from server.ingest.unnamed_budget import Holding, UnnamedBudget

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: (sha256, device_id, case_no): a seal's event of that case names that picture.
Name = tuple[str, str, str]
#: (sha256, case_no, device_id): a row of :class:`Snapshot`, a seal's delivery of those bytes filed under that case.
Held = tuple[str, str, str]

#: The names a batch adds, in one statement (its seals' rows are locked: no other transaction adds them meanwhile).
_NEW_NAMES = BulkInsert(cast(Table, SnapshotName.__table__), ("sha256", "device_id", "case_no"))
#: Of some pictures (device_id, sha256) no stored event of their seal names, those held back.
Hold = Callable[[Session, set[tuple[str, str]]], set[tuple[str, str]]]
#: One bound list, not a parameter per picture (SQLite limits a statement's parameters).
_NAMES_OF = select(SnapshotName.sha256, SnapshotName.device_id, SnapshotName.case_no).where(
    one_of(cast(Table, SnapshotName.__table__).c.sha256, "shas")
)
_ROWS_OF = select(Snapshot).where(one_of(cast(Table, Snapshot.__table__).c.sha256, "shas")).order_by(Snapshot.id)


def pictures_to_file(payload: Mapping[str, Any]) -> list[str]:
    """The pictures an event's payload names that a snapshot topic can carry (64 lowercase hex digits)."""
    return [sha for sha in named_pictures(payload) if _SHA256.fullmatch(sha)]


@dataclass(frozen=True)
class _Picture:
    place: int  # the message's place in its batch
    sha256: str
    device_id: str
    case_no: str | None  # where it goes if no event names it: the seal's current case, or its last (None: held back)
    size: int
    received_at: datetime


class SnapshotFiling:
    """The pictures a batch received and the pictures its stored events name; their rows are written by
    :meth:`write`, once the seals' rows are locked."""

    def __init__(self, unnamed_budget: int | None = None) -> None:
        self._names: set[Name] = set()
        self._pictures: list[_Picture] = []
        self._unnamed_budget = unnamed_budget  # per seal, of the pictures no stored event names (None: no bound)

    @property
    def seals(self) -> set[str]:
        """The seals whose rows must be locked before :meth:`write`."""
        return {name[1] for name in self._names} | {p.device_id for p in self._pictures}

    def budget(self, hold: Holding, now: datetime) -> UnnamedBudget:
        """``hold`` and the seals' budget of pictures no stored event names: ask it about the pictures no stored event
        of their seal names, once every picture of the batch was received (:meth:`picture`); it tells why it held
        each back (:meth:`UnnamedBudget.refusal`)."""
        sizes = {(p.device_id, p.sha256): p.size for p in self._pictures}
        return UnnamedBudget(hold, sizes, per_seal=self._unnamed_budget, now=now)

    def named(self, device_id: str, case_no: str, payload: Mapping[str, Any]) -> None:
        """A stored event of ``case_no``; most name no picture, and cost two lookups in their payload."""
        if "snapshots" in payload or "snapshot" in payload:
            self._names.update((sha, device_id, case_no) for sha in pictures_to_file(payload))

    def picture(
        self, place: int, sha256: str, device_id: str, *, case_no: str, size: int, received_at: datetime
    ) -> None:
        """A picture whose bytes are in the store; ``case_no`` takes it if no event names it."""
        self._pictures.append(_Picture(place, sha256, device_id, case_no, size, received_at))

    def write(self, session: Session, results: list[IngestResult], hold: Hold | None = None) -> list[int]:
        """Add the names and the pictures' rows (a picture every case of which holds it already is a duplicate in
        ``results``), and move the pictures the new names claim. ``hold`` is asked about the pictures no stored event
        of their seal names (only those: a named one is filed under its names' cases whatever it says), and those it
        holds back are filed only if a row of their seal holds them already (a duplicate): never provisionally under
        the seal's current case (an event refused for its case names them, and may yet be stored in that earlier
        case, or the seal was moved from another case lately: :mod:`server.ingest.late_chain`). Returns the places of
        the pictures held back and not filed."""
        unfiled: list[int] = []
        if not self._names and not self._pictures:
            return unfiled
        shas = sorted({name[0] for name in self._names} | {p.sha256 for p in self._pictures})
        stored: set[Name] = {(s, d, c) for s, d, c in session.execute(_NAMES_OF, {"shas": shas})}
        new = sorted(self._names - stored)
        _NEW_NAMES.execute(session, [{"sha256": s, "device_id": d, "case_no": c} for s, d, c in new])
        # Each picture's names and rows apart: filing one looks at its own only, so that a batch's work grows with
        # its names and pictures, not with their product (each event names at most MAX_NAMED_SNAPSHOTS).
        names_of: dict[str, set[Name]] = defaultdict(set)
        for name in stored | self._names:
            names_of[name[0]].add(name)
        held_of: dict[str, dict[Held, Snapshot]] = defaultdict(dict)
        for row in session.scalars(_ROWS_OF, {"shas": shas}):
            held_of[row.sha256][(row.sha256, row.case_no, row.device_id)] = row
        unnamed = {(p.device_id, p.sha256) for p in self._pictures if not _names_from(names_of[p.sha256], p.device_id)}
        if hold is not None and unnamed:
            held_back = hold(session, unnamed)
            self._pictures = [
                replace(p, case_no=None) if (p.device_id, p.sha256) in held_back else p for p in self._pictures
            ]
        for picture in self._pictures:
            sha = picture.sha256
            filed = self._file(session, held_of[sha], names_of[sha], picture)
            if filed is None:
                unfiled.append(picture.place)
            elif not filed:
                results[picture.place] = replace(
                    results[picture.place], outcome=Outcome.DUPLICATE, detail=f"snapshot {picture.sha256}"
                )
        for name in sorted(self._names):
            _claim(session, held_of[name[0]], names_of[name[0]], name)
        return unfiled

    @staticmethod
    def _file(session: Session, held: dict[Held, Snapshot], names: set[Name], picture: _Picture) -> bool | None:
        """Add ``picture``'s rows from its seal: one in each case whose events from it name it, else in its seal's
        case. False if none was missing; None if it is held back and nothing names or holds it."""
        sha, device_id = picture.sha256, picture.device_id
        cases = sorted({c for s, d, c in names if s == sha and d == device_id})
        if not cases:
            if picture.case_no is None:
                return False if any(s == sha and d == device_id for s, _, d in held) else None
            cases = [picture.case_no]
        missing = [case_no for case_no in cases if (sha, case_no, device_id) not in held]
        for case_no in missing:
            row = Snapshot(
                sha256=sha,
                device_id=device_id,
                case_no=case_no,
                size=picture.size,
                received_at=picture.received_at,
            )
            session.add(row)
            held[(sha, case_no, device_id)] = row
        return bool(missing)


def _names_from(names: set[Name], device_id: str) -> bool:
    return any(d == device_id for _, d, _ in names)


def _claim(session: Session, held: dict[Held, Snapshot], names: set[Name], name: Name) -> None:
    """The picture ``name`` names, held from its seal, filed under the name's case; its seal's rows in cases none of
    whose events *from it* name those bytes move there (the first, if the case lacks its row) or go. Another seal's
    rows are never touched: each seal's delivery has rows of its own (the same bytes from two seals of one case are
    two rows, so that neither can take the other's from the case)."""
    sha, device_id, case_no = name
    ours = [row for (s, _, d), row in held.items() if s == sha and d == device_id]
    if not ours:
        return  # not received yet: filed by the names when it comes
    named_cases = {c for s, d, c in names if s == sha and d == device_id}
    provisional = [row for row in ours if row.case_no not in named_cases]
    if (sha, case_no, device_id) not in held:
        if provisional:
            row = provisional.pop(0)
            del held[(sha, row.case_no, device_id)]
            row.case_no = case_no
        else:
            first = ours[0]
            row = Snapshot(
                sha256=sha, device_id=device_id, case_no=case_no, size=first.size, received_at=first.received_at
            )
            session.add(row)
        held[(sha, case_no, device_id)] = row
    for row in provisional:
        del held[(sha, row.case_no, device_id)]
        if row in session.new:
            session.expunge(row)
        else:
            session.delete(row)
