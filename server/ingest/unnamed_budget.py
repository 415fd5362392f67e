"""Each seal's budget of pictures no stored event of it names (``[ingest] unnamed_snapshot_seal_bytes``).

A picture is not signed: whoever holds a seal's MQTT password (on its SD card, at the debtor's premises) can publish
valid JPEGs on its snapshot topic. One that a stored signed event of the seal names is evidence; one that none names
is filed provisionally under the seal's case (:mod:`.snapshot_filing`), as a genuine picture that comes before its
``snapshot_taken`` event is. Unbounded, those pictures would let one password fill the court's disk. So the bytes of
a seal's provisional pictures (its ``snapshots`` rows with no ``snapshot_names`` row of the same bytes and seal)
received within the last :data:`UNNAMED_WINDOW` are counted, and a new picture no stored event names that would take
them past the budget is refused as ``unnamed_snapshots``: quarantined unreceipted, so a genuine one stays on its seal,
which sends it again — by then its naming event is stored, and a named picture is never counted nor refused.

Checked twice: before the transaction, on the read-only session that decides which pictures to write
(:mod:`.snapshot_writes`), so that nothing is written to the store for a refused picture; and inside it, once the
seal's row is locked (:class:`UnnamedBudget`, beside the hold-back), which decides. A picture written because two
workers checked at once is left in the store without a row (named by its hash, at most a batch's pictures per worker).
Only a batch holding a picture no stored event names pays the check: a read of the names and rows of its pictures,
and per such seal a sum over its rows received within the window (the index (device_id, received_at)).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session

from server.core.value_lists import one_of
from server.evidence.models import Snapshot, SnapshotName
from server.ingest.results import IngestResult, Reason, Rejected

logger = logging.getLogger(__name__)

#: How far back a seal's provisional pictures are counted: at most the budget of them is filed per seal in that time.
UNNAMED_WINDOW = timedelta(days=1)
#: A picture: (device_id, sha256).
Picture = tuple[str, str]

_NAMES = select(SnapshotName.device_id, SnapshotName.sha256).where(
    one_of(cast(Table, SnapshotName.__table__).c.sha256, "shas")
)
_ROWS = select(Snapshot.device_id, Snapshot.sha256).where(one_of(cast(Table, Snapshot.__table__).c.sha256, "shas"))
#: The bytes of a seal's provisional pictures received since ``since``: its rows no name of the same bytes and seal
#: claims (the index (device_id, received_at), then each row's names by the unique (sha256, device_id, case_no)).
_UNNAMED_BYTES = select(func.coalesce(func.sum(Snapshot.size), 0)).where(
    Snapshot.device_id == bindparam("device_id"),
    Snapshot.received_at >= bindparam("since"),
    ~select(SnapshotName.id)
    .where(SnapshotName.sha256 == Snapshot.sha256, SnapshotName.device_id == Snapshot.device_id)
    .exists(),
)


def over_budget(session: Session, pictures: Mapping[Picture, int], per_seal: int, *, now: datetime) -> set[Picture]:
    """Of ``pictures`` (picture -> its size, in the batch's order), those no stored event of their seal names, that
    their seal does not hold yet, and that would take the seal's provisional pictures of the last
    :data:`UNNAMED_WINDOW` past ``per_seal`` bytes (the earlier ones of the batch counted first)."""
    if not pictures:
        return set()
    shas = sorted({sha for _, sha in pictures})
    known = {(d, s) for d, s in session.execute(_NAMES, {"shas": shas})}
    known |= {(d, s) for d, s in session.execute(_ROWS, {"shas": shas})}  # a redelivery: a duplicate, never refused
    new = [(picture, size) for picture, size in pictures.items() if picture not in known]
    used: dict[str, int] = {}
    over: set[Picture] = set()
    for (device_id, sha), size in new:
        if device_id not in used:
            params = {"device_id": device_id, "since": now - UNNAMED_WINDOW}
            used[device_id] = int(session.execute(_UNNAMED_BYTES, params).scalar_one())
        if used[device_id] + size > per_seal:
            over.add((device_id, sha))
        else:
            used[device_id] += size
    for device_id in sorted({d for d, _ in over}):
        refused = sum(1 for d, _ in over if d == device_id)
        logger.warning(
            "seal %s: %d picture(s) no stored event names refused (unnamed_snapshots): its unnamed pictures of the "
            "last day take %d of the %d bytes it may have",
            device_id,
            refused,
            used[device_id],
            per_seal,
        )
    return over


def unnamed_refusal(sha256: str, per_seal: int) -> Rejected:
    """The refusal of a picture :func:`over_budget` found."""
    return Rejected(
        Reason.UNNAMED_SNAPSHOTS,
        f"snapshot {sha256} is named by no stored event of its seal, whose pictures no event names already take "
        f"its budget ({per_seal} bytes a day): the seal keeps it and sends it again; once its naming event is "
        "stored, it is filed in the event's case",
    )


class Holding(Protocol):
    """What holds pictures back besides the budget (:class:`~server.ingest.late_chain.HoldBack`)."""

    def pictures(self, session: Session, unnamed: set[Picture]) -> set[Picture]: ...

    def refusal(self, result: IngestResult) -> Rejected: ...


class UnnamedBudget:
    """The hold-back (:class:`~server.ingest.late_chain.HoldBack`) and the budget: the pictures no stored event of
    their seal names that are not filed now (:meth:`pictures`), and why (:meth:`refusal`). ``sizes``: each
    picture's size, in the batch's order; ``per_seal``: the budget (None: none)."""

    def __init__(self, hold: Holding, sizes: Mapping[Picture, int], *, per_seal: int | None, now: datetime) -> None:
        self._hold = hold
        self._sizes = sizes
        self._per_seal = per_seal
        self._now = now
        self._over: set[Picture] = set()

    def pictures(self, session: Session, unnamed: set[Picture]) -> set[Picture]:
        held = self._hold.pictures(session, unnamed)
        if self._per_seal is not None:
            rest = {picture: size for picture, size in self._sizes.items() if picture in unnamed - held}
            self._over = over_budget(session, rest, self._per_seal, now=self._now)
        return held | self._over

    def refusal(self, result: IngestResult) -> Rejected:
        """The refusal of a picture :meth:`pictures` gave (``result``: its outcome as a snapshot)."""
        if self._per_seal is not None and (result.device_id, result.detail) in self._over:
            return unnamed_refusal(result.detail, self._per_seal)
        return self._hold.refusal(result)
