"""Whether a seal that says it is disarmed is expected to be: the court's side of an ``intrusion`` or ``tamper`` whose
payload says ``armed: false``.

A seal is rightly disarmed only by the removal of its case. The judge's approval sends a signed ``disarm`` to every
seal bound to the case and moves the case to ``lifting``, in one transaction (the request is then ``disarm_pending``,
later ``disarmed``); withdrawing the approval moves the case back to ``sealed`` (the request ``aborted``), and the
officer's lifting on to ``lifted`` (its seals unbound in the same transaction). So the case's status says what the
request's state does, and the ingest reads the case (:mod:`server.seals`), never the workflow (:mod:`server.removal`
sits above the ingest and is never imported by it). No seal is bound to a ``lifting`` case but those its approval
disarmed: a seal cannot be bound to it, and its seals come off only through the request.

Such an event is *expected*, and raises no alarm, if the case it is filed under is

- ``lifting``, the event is not late (its seal is still bound there), and it is stamped no earlier than the case
  became ``lifting``, less the clock allowance of a binding (:data:`~server.ingest.checks.BINDING_CLOCK_SKEW`): the
  approval's disarm cannot have been carried out before the approval;
- ``lifted``: an event filed there is one of its seals draining its outbox after the lifting unbound them;
- ``closed``: the case is over, nothing of it is guarded any more (a lifted case is closed soon after its lifting,
  while a removed seal, kept in store, may send what its outbox holds days later: its disarmed ``tamper`` of the
  removal is no news to anyone).

Anything else raises the alarm an armed seal's event would (the case's judge must see the intrusion), marked
``disarmed_while_sealed`` (:mod:`server.ingest.alarming`): a ``sealed`` case — a seal reused after a lifting, a
disarm of its old case that the broker held for a seal moved since, the judge's own ``disarm`` through
``POST /api/seals/{id}/commands`` (maintenance: the seizure stands, so the alarm is right), the time between a
withdrawn approval and the seal's acknowledgement of the ``arm`` that follows it — an ``open`` case, or a late event
of a ``lifting`` one (its seal left the case before the approval), or one stamped before the approval: in each, no
removal of the case was under way when the seal said it was disarmed, which is what the pages say.

The statuses are read in one statement per batch, for the cases of all its disarmed intrusions and tampers, when the
first of them is settled; a batch without one (nearly every batch) reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, EventType
from server.core.value_lists import one_of
from server.ingest.checks import BINDING_CLOCK_SKEW
from server.seals.models import Case, CaseStatus

_CASES = cast(Table, Case.__table__)
_STATUSES = select(_CASES.c.case_no, _CASES.c.status, _CASES.c.status_changed_at).where(
    one_of(_CASES.c.case_no, "case_nos")
)
_TRIGGERS = frozenset({EventType.INTRUSION.value, EventType.TAMPER.value})


def says_disarmed(envelope: Envelope) -> bool:
    """An ``intrusion`` or ``tamper`` of a seal that says it is disarmed."""
    return envelope.type.value in _TRIGGERS and envelope.payload.get("armed") is False


class ExpectedDisarms:
    """Whether the disarmed intrusions and tampers of one batch are expected (the module's doc). ``stored``: the
    batch's event rows (``type``, ``payload``, ``case_no``), all of them by the time the first is asked about."""

    def __init__(self, session: Session, stored: Sequence[Mapping[str, object]]) -> None:
        self._session = session
        self._stored = stored
        self._cases: dict[str, tuple[str, datetime | None]] | None = None

    def expected(self, envelope: Envelope, *, case_no: str, late: bool) -> bool:
        """Is the disarm ``envelope`` (which :func:`says_disarmed`) reports, stored in ``case_no``, expected?"""
        if self._cases is None:
            self._cases = self._read()
        status, since = self._cases.get(case_no, (None, None))
        if status in (CaseStatus.LIFTED, CaseStatus.CLOSED):
            return True
        if status != CaseStatus.LIFTING or late:
            return False
        return since is None or envelope.occurred_at >= since - BINDING_CLOCK_SKEW

    def _read(self) -> dict[str, tuple[str, datetime | None]]:
        wanted = {
            cast(str, row["case_no"])
            for row in self._stored
            if row["type"] in _TRIGGERS and cast(Mapping[str, object], row["payload"]).get("armed") is False
        }
        if not wanted:  # not asked about any of the batch's events: nothing to read
            return {}
        rows = self._session.execute(_STATUSES, {"case_nos": sorted(wanted)})
        return {case_no: (status, since) for case_no, status, since in rows}
