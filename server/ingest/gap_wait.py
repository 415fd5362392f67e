"""How long an event beyond a gap in its seal's chain is held back for its predecessor (``[mqtt] gap_wait_s``).

Workers sharing the stream each store only the event right after their seal's stored head; an event beyond it waits
(:attr:`~server.ingest.results.Outcome.DEFERRED`, unacknowledged, offered again in a moment) for another worker to
store the events in between. A seal draining a burst has its consecutive seqs dealt to the workers in turn, so its
chain moves about one seq per retry round, and the wait an event needs grows with its distance from the head: counted
from its receipt alone, the later events of a burst ran out of ``gap_wait_s`` and were stored beyond gaps that never
were (``missing_events`` opened and closed, with notifications). So an event waits ``gap_wait_s`` from its receipt,
and longer while its chain is still moving — its ``chain_state`` written (by any worker) within ``gap_wait_s`` — but
never past :data:`GAP_WAIT_CAP` × ``gap_wait_s`` from its receipt: a real gap still raises its alarm, at the latest
``gap_wait_s`` after the chain stops moving (or at the cap). The wait is measured on the monotonic clock
(:attr:`~server.ingest.results.Message.received_mono`): a step of the court's wall clock back by an hour would hold an
event beyond a real gap (unacknowledged, verified again every retry) for that hour; only ``moved_at``, a time written
to the database, is compared on the wall clock.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

#: An event beyond a gap is held back at most this many times ``gap_wait_s`` from its receipt, however long its
#: seal's chain keeps moving.
GAP_WAIT_CAP = 10


def keeps_waiting(received_mono: float, now: datetime, moved_at: datetime | None, gap_wait: timedelta) -> bool:
    """Should an event beyond a gap, received at ``received_mono`` (``time.monotonic()``), wait longer for its
    predecessor? ``now``: the wall clock, to compare with ``moved_at``, when its seal's chain state was last written
    (read under its lock; None: made just now)."""
    waited = timedelta(seconds=time.monotonic() - received_mono)
    if waited >= GAP_WAIT_CAP * gap_wait:
        return False
    return waited < gap_wait or (moved_at is not None and now - moved_at < gap_wait)
